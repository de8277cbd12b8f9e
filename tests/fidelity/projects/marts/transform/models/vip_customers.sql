MODEL (
  name finance.vip_customers,
  kind FULL,
  grain customer
);

SELECT
  customer,
  SUM(amount_cents) AS lifetime_cents
FROM staging.payments_seed
GROUP BY customer
HAVING
  SUM(amount_cents) >= @VAR('vip_threshold_cents');

CREATE OR REPLACE TABLE warehouse.main.vip_refresh AS SELECT COUNT(*) AS vips FROM @this_model;
