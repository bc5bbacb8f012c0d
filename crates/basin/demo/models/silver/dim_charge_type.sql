/* basin
materialized = "table"
owner = "finance"
description = "What an invoice line charges for, with its module."
*/
SELECT
    ct.charge_type_id,
    ct.code          AS charge_code,
    ct.name          AS charge_type,
    m.name           AS module,
    CAST(ct.flg_recurring AS BOOLEAN) AS is_recurring
FROM bronze_current.v3__charge_type ct
LEFT JOIN bronze_current.v3__module_type m ON m.module_type_id = ct.module_type_id
