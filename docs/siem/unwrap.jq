# The plain OCSF event of one leaseguard CloudEvent, as `leaseguard evidence
# export` writes it: the event's data with the envelope and the chain under
# unmapped.chain. For a live stream (the evidence subject) where running the
# export is not possible: `jq -c -f unwrap.jq`. jq rewrites numbers as
# doubles, so keep the CloudEvents (or use the export) where the chain must
# verify byte for byte.
.data + {unmapped: ((.data.unmapped // {}) + {chain: ({
  seq: .chainseq,
  prevhash: .prevhash,
  hash: .hash,
  event_id: .id,
  cloudevents_type: .type,
  cloudevents_source: .source,
  cloudevents_time: .time,
  cloudevents_dataschema: .dataschema
} + (if .subject then {subject: .subject} else {} end))})}
