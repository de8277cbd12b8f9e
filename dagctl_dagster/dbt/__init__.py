# The `framework:` value of a dbt project.
FRAMEWORK = "dbt"
