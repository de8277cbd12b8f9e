from __future__ import annotations

import typing as t

from sqlmesh import CustomMaterialization, Model


class ReplaceByInsert(CustomMaterialization):
    """Keeps the table once created (and whatever was granted on it): later loads empty it
    and insert the query's rows instead of replacing it."""

    NAME = "replace_by_insert"

    def insert(
        self,
        table_name: str,
        query_or_df: t.Any,
        model: Model,
        is_first_insert: bool,
        render_kwargs: t.Dict[str, t.Any],
        **kwargs: t.Any,
    ) -> None:
        if is_first_insert or not self.adapter.table_exists(table_name):
            self.adapter.replace_query(table_name, query_or_df)
            return
        self.adapter.delete_from(table_name, "TRUE")
        self.adapter.insert_append(table_name, query_or_df)
