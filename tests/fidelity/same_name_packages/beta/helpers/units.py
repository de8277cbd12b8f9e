FACTOR = 100


def tag(n: int) -> str:
    return f"beta:{n * 2}"
