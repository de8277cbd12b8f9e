# The `framework:` value of a SQLMesh project.
FRAMEWORK = "sqlmesh"
