// Package export writes evidence exported as plain OCSF (evidence.Unwrap)
// to files a SIEM takes in: JSONL, one OCSF event per line, or Parquet with
// typed columns for the attributes every class has and the whole event as
// JSON; to one stream, or to one file per OCSF class, as AWS Security Lake
// wants one custom source per class. docs/siem/ has the recipes.
package export
