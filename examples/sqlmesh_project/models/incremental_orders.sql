MODEL (
  name sqlmesh_example.incremental_orders,
  kind INCREMENTAL_BY_TIME_RANGE (time_column order_date),
  grain (order_id),
  description 'Orders, loaded one day at a time.',
  owner 'data-platform',
  tags (orders, incremental),
  audits (assert_positive_amount)
);

SELECT
  order_id::INTEGER AS order_id,
  customer_id::INTEGER AS customer_id,
  item_id::INTEGER AS item_id,
  amount::DOUBLE AS amount,
  order_date::DATE AS order_date
FROM sqlmesh_example.seed_orders
WHERE order_date BETWEEN @start_ds AND @end_ds
