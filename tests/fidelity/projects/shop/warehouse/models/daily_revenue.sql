MODEL (
  name shop.daily_revenue,
  kind INCREMENTAL_BY_TIME_RANGE (
    time_column order_date
  ),
  grain order_date,
  audits (
    assert_positive(column := revenue)
  )
);

@DEF(large_order_threshold, 50);

SELECT
  order_date,
  COUNT(*) AS orders,
  SUM(amount) AS revenue,
  COUNT(*) FILTER (WHERE amount >= @large_order_threshold) AS large_orders
FROM shop.daily_orders
WHERE
  order_date BETWEEN @start_ds AND @end_ds
GROUP BY order_date
