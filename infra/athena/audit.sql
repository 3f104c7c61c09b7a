-- The audit trail as an Athena table: the same table template.yaml creates (AuditTable, in
-- the Glue database quarry_<stage>, stage hyphens as underscores). Use this file to create
-- it elsewhere (another account's Athena, a restored copy of the bucket): replace ${bucket}
-- with the audit bucket's name (the stack output AuditBucketName), then run it in the
-- database of your choice.
--
-- Firehose writes one gzipped JSON record per line under
-- audit/tenant=<tenant>/date=<yyyy-mm-dd>/. The partitions are projected, not crawled:
-- `tenant` is injected, so every query names its tenant (WHERE tenant = '...'); `date`
-- runs from 2024-01-01 to today. tenant is a partition key only: it is the record's own
-- tenant field, by which Firehose partitions, and a column may not share its name.
-- params, guardrails, grounding, input and variables hold JSON text (json_extract them);
-- truncated is true where a record's texts were cut to fit Firehose's 1,000 KiB.
CREATE EXTERNAL TABLE IF NOT EXISTS audit (
  schema_version int,
  request_id string,
  `time` string,
  level string,
  `key` string,
  prompt struct<name:string,version:bigint>,
  model string,
  base_model string,
  region string,
  params string,
  usage struct<input:bigint,output:bigint,cache_read:bigint,cache_write:bigint>,
  cost_usd string,
  cached boolean,
  fallbacks array<string>,
  guardrails string,
  grounding string,
  sources array<struct<uri:string,score:double>>,
  input_sha256 string,
  output_sha256 string,
  input string,
  output string,
  variables string,
  truncated boolean
)
PARTITIONED BY (
  tenant string,
  `date` string
)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
STORED AS INPUTFORMAT 'org.apache.hadoop.mapred.TextInputFormat'
OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'
LOCATION 's3://${bucket}/audit/'
TBLPROPERTIES (
  'classification' = 'json',
  'compressionType' = 'gzip',
  'projection.enabled' = 'true',
  'projection.tenant.type' = 'injected',
  'projection.date.type' = 'date',
  'projection.date.format' = 'yyyy-MM-dd',
  'projection.date.range' = '2024-01-01,NOW',
  'projection.date.interval' = '1',
  'projection.date.interval.unit' = 'DAYS',
  'storage.location.template' = 's3://${bucket}/audit/tenant=${tenant}/date=${date}/'
);
