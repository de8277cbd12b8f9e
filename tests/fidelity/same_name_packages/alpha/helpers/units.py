FACTOR = 10


def tag(n: int) -> str:
    return f"alpha-{n}"
