/* basin
# Silver tables are a pure function of bronze: rebuilt in full each night from the current
# state of bronze, so they can always be rebuilt without touching the source.
materialized = "table"
owner = "data-team"
description = "Reseller partners, one row each."
*/
SELECT
    partner_id,
    name                         AS partner_name,
    country,
    CAST(flg_active AS BOOLEAN)               AS is_active,      -- TINYINT flags become BOOLEAN
    CAST(created_at AS DATE)     AS created_on
FROM bronze_current.v3__partner
