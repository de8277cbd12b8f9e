AUDIT (
  name revenue_reconciles,
  standalone true,
  dialect duckdb,
);

SELECT r.total, s.total
FROM (SELECT SUM(revenue) AS total FROM shop.daily_revenue) AS r
CROSS JOIN (SELECT SUM(revenue) AS total FROM shop.product_sales) AS s
WHERE
  r.total <> s.total
