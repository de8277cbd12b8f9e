from sqlmesh import macro


@macro()
def project_label(evaluator):
    return "'repo_1'"
