MODEL (
  name shop.product_sales,
  kind FULL,
  grain product_id,
  audits (
    assert_positive(column := units),
    accepted_values_non_blocking(column := category, is_in := ('coffee', 'equipment', 'accessories'))
  )
);

SELECT
  p.product_id,
  p.product_name,
  p.category,
  SUM(o.quantity) AS units,
  SUM(o.amount) AS revenue
FROM shop.daily_orders AS o
JOIN shop.seed_products AS p
  ON o.product_id = p.product_id
GROUP BY p.product_id, p.product_name, p.category
