MODEL (
  name sqlmesh_example.item_revenue,
  kind FULL,
  grain (item_id),
  description 'Revenue and order count per item.',
  audits (not_null(columns := (item_id, revenue)))
);

SELECT
  item_id,
  COUNT(*)::INTEGER AS num_orders,
  SUM(amount)::DOUBLE AS revenue
FROM sqlmesh_example.incremental_orders
GROUP BY item_id
