MODEL (
  name shop.order_lines,
  kind EMBEDDED
);

SELECT
  order_id,
  customer_id,
  product_id,
  order_date,
  quantity,
  @cents_to_dollars(quantity * unit_price_cents) AS amount
FROM shop.seed_orders
