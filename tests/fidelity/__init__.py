"""SQLMesh fidelity corpus: fixture repositories that must run through Dagster exactly as
`sqlmesh plan` + `sqlmesh run` run them (issue 13). `harness.py` runs and compares;
tests/test_fidelity_sqlmesh.py drives it for every directory under `projects/`.

Each fixture is a repository root: `.dagctl/config.yaml`, SQLMesh projects below it (YAML
config, DuckDB gateway at its defaults: relative `database`, no `concurrent_tasks`), and an
optional `fidelity.yaml`:

    jobs: [a_run, b_run]            # default: <project>_run for every project, config order
    native: {cwd: ., paths: [repo_1, repo_2]}   # default: cwd = the only project's path, no -p
    setup_sql: {<db file relative to the root>: [statements]}   # tables users create outside SQLMesh

projects/init_duckdb  byte-for-byte `sqlmesh init duckdb` (db.db, SEED, INCREMENTAL_BY_TIME_RANGE
                      from 2020, FULL, custom audit, unit test, linter)
projects/shop         SEED x2, EMBEDDED, INCREMENTAL_BY_TIME_RANGE (one with batch_size),
                      INCREMENTAL_BY_UNIQUE_KEY, SCD_TYPE_2_BY_TIME, FULL, VIEW; @DEF, a Python
                      macro, a Jinja macro from macros/*.sql; built-in, custom and non-blocking
                      (failing) audits; external model with audits on a table created before the
                      runs; standalone audit; before_all/after_all using @this_env; unit test
projects/events       Python models (a DataFrame; a generator with batch_size), a signal that
                      leaves weekend intervals unready, a CUSTOM materialization from
                      materializations/, Python macro, @DEF, non-blocking custom audit, VIEW,
                      files read by relative path (read_csv in SQL, pd.read_csv in Python), unit test
projects/marts        DuckDB `catalogs` (two files under data/, relative), a non-default gateway
                      named in .dagctl, `variables` + @VAR, blueprints, a model in another
                      catalog, INCREMENTAL_BY_TIME_RANGE with `lookback` (so `sqlmesh run` has work)
                      and a signal with arguments, a weekly cron, a postgres-dialect model,
                      a post-statement, seed `csv_settings`, unit test
projects/multi_repo   repo_1 + repo_2 (`project:` names, one state): repo_2 reads repo_1's
                      models; before_all with a macro; batch_size; unit test in repo_2
"""
