MODEL (
  name shop.top_products,
  kind VIEW
);

SELECT
  product_name,
  revenue
FROM shop.product_sales
ORDER BY revenue DESC
LIMIT 3
