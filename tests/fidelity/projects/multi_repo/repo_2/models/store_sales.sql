MODEL (
  name silver.store_sales,
  kind FULL,
  grain store_id,
  audits (
    unique_values(columns := (store_id))
  )
);

SELECT
  st.store_id,
  st.city,
  COUNT(s.till_id) AS sales,
  COALESCE(SUM(s.amount), 0) AS revenue
FROM bronze.stores AS st
LEFT JOIN bronze.sales AS s
  ON st.store_id = s.store_id
GROUP BY st.store_id, st.city
