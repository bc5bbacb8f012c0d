/* basin
materialized = "table"
owner = "finance"
description = "One row per invoice header: invoice + invoice_status + invoice_data, with the customer's partner."
*/
SELECT
    i.invoice_id,
    i.customer_id,
    c.partner_id,
    i.invoice_date,
    i.period_start,
    i.period_end,
    s.code                                          AS status_code,
    s.label                                         AS status,
    s.code = 'PAID'                                 AS is_paid,
    CAST(i.total_net AS DECIMAL(18, 4))             AS total_net,
    CAST(i.total_vat AS DECIMAL(18, 4))             AS total_vat,
    CAST(i.total_net + i.total_vat AS DECIMAL(18, 4)) AS total_gross,
    d.payment_method,
    d.dunning_level,
    d.due_date,
    d.paid_on,                                      -- '0000-00-00' (unpaid) arrives as NULL
    d."DocRef"                                      AS document_ref,  -- legacy names need quotes
    i.created_at,
    i.updated_at
FROM bronze_current.v3__invoice i
LEFT JOIN bronze_current.v3__invoice_status s ON s.invoice_status_id = i.invoice_status_id
LEFT JOIN bronze_current.v3__invoice_data d ON d.invoice_id = i.invoice_id
LEFT JOIN bronze_current.v3__customer c ON c.customer_id = i.customer_id
