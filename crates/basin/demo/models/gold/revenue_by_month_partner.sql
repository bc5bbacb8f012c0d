/* basin
materialized = "table"
owner = "finance"
description = "Invoiced revenue (net of VAT) per month and partner: the sum of invoice line items."
# Finance reads it at 08:00: `basin daemon` judges this every morning (`basin slo`).
slo = { ready_by = "07:30", timezone = "Europe/Berlin" }

[[checks]]
type = "not_null"
columns = ["month", "revenue"]
*/
WITH lines AS (
    SELECT
        CAST(date_trunc('month', it.invoice_date) AS DATE) AS month,
        i.partner_id,
        it.invoice_id,
        it.amount
    FROM silver.fact_invoice_item it
    LEFT JOIN silver.fact_invoice i ON i.invoice_id = it.invoice_id
)
SELECT
    l.month,
    l.partner_id,
    COALESCE(p.partner_name, '(erased customers)') AS partner_name,
    COUNT(DISTINCT l.invoice_id)                   AS invoices,
    CAST(SUM(l.amount) AS DECIMAL(18, 4))          AS revenue
FROM lines l
LEFT JOIN silver.dim_partner p ON p.partner_id = l.partner_id
GROUP BY l.month, l.partner_id, p.partner_name
