MODEL (
  name silver.best_city,
  kind VIEW
);

SELECT
  city,
  revenue
FROM silver.store_sales
ORDER BY revenue DESC
LIMIT 1
