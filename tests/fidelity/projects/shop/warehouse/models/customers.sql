MODEL (
  name shop.customers,
  kind INCREMENTAL_BY_UNIQUE_KEY (
    unique_key customer_id
  ),
  grain customer_id,
  audits (
    unique_values(columns := (customer_id))
  )
);

SELECT
  customer_id,
  customer_name,
  tier,
  signup_date,
  updated_at
FROM raw.customers
WHERE
  updated_at BETWEEN @start_ts AND @end_ts
