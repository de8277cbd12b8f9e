MODEL (
  name shop.daily_orders,
  kind INCREMENTAL_BY_TIME_RANGE (
    time_column order_date,
    batch_size 3
  ),
  grain order_id,
  audits (
    not_null(columns := (order_id, customer_id)),
    unique_values(columns := (order_id))
  )
);

SELECT
  order_id,
  customer_id,
  product_id,
  order_date,
  quantity,
  amount
FROM shop.order_lines
WHERE
  order_date BETWEEN @start_ds AND @end_ds
