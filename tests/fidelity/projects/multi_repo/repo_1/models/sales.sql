MODEL (
  name bronze.sales,
  kind INCREMENTAL_BY_TIME_RANGE (
    time_column sale_date,
    batch_size 5
  ),
  grain till_id,
  audits (
    not_null(columns := (till_id, store_id)),
    accepted_range(column := amount, min_v := 0)
  )
);

SELECT
  till_id,
  store_id,
  sale_date,
  amount
FROM bronze.till_rows
WHERE
  sale_date BETWEEN @start_ds AND @end_ds
