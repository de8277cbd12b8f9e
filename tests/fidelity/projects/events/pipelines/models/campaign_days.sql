MODEL (
  name events.campaign_days,
  kind FULL,
  grain (campaign, event_date)
);

SELECT
  c.campaign,
  c.channel,
  e.event_date,
  COUNT(*) AS events
FROM read_csv('data/campaigns.csv', header = true, columns = {'campaign': 'TEXT', 'starts_on': 'DATE', 'ends_on': 'DATE', 'channel': 'TEXT'}) AS c
JOIN events.raw_events AS e
  ON e.event_date BETWEEN c.starts_on AND c.ends_on
GROUP BY c.campaign, c.channel, e.event_date
