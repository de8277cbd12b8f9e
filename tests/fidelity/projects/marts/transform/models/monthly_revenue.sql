MODEL (
  name finance.monthly_revenue,
  kind FULL,
  dialect postgres,
  grain month
);

SELECT
  CAST(DATE_TRUNC('month', paid_on) AS DATE) AS month,
  SUM(amount_cents)::NUMERIC / 100 AS revenue,
  STRING_AGG(DISTINCT customer, ',' ORDER BY customer) AS customers
FROM staging.payments_seed
GROUP BY 1
