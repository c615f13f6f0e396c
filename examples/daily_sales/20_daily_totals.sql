-- Aggregate the extracted orders per day. Several statements per file are fine.
DROP TABLE IF EXISTS daily_sales;
CREATE TABLE daily_sales (day TEXT, orders INTEGER, revenue NUMERIC(12, 2));
INSERT INTO daily_sales (day, orders, revenue)
SELECT day, COUNT(*), ROUND(SUM(amount), 2)
FROM raw_orders
GROUP BY day;
