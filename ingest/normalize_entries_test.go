package ingest

// Entries below are shaped as Vault 1.15 to 1.21 writes them, modelled on the
// 1.21.0 fixture. They are written indented for reading and compacted to one
// line before decoding, as an audit device writes them.

// authAlice is the auth block of a userpass token (fixture, lines 19-28).
const authAlice = `"auth": {
	"accessor": "hmac-sha256:3238940e4967e95d953bc0f1ae592f5a02f51252e61207e675b3235bf97126d5",
	"client_token": "hmac-sha256:b056e18ae5848fec282b16b66a5ed14fa914658c929fc43c20200c5c13a4dbc6",
	"display_name": "userpass-alice",
	"entity_id": "ffe23c2c-69ab-e043-c810-bf24e5df3f4b",
	"metadata": {"username": "alice"},
	"policies": ["default", "rep"],
	"policy_results": {"allowed": true, "granting_policies": [{"type": ""}, {"name": "rep", "namespace_id": "root", "type": "acl"}]},
	"token_policies": ["default", "rep"],
	"token_issue_time": "2026-11-25T19:23:33Z",
	"token_ttl": 2764800,
	"token_type": "service"
}`

// authRoot is the auth block of the root token (fixture, line 25).
const authRoot = `"auth": {
	"accessor": "hmac-sha256:268540f40e6435a27bdc3943103f9588e78b6ba50651cab8090ce305f73a8ad7",
	"client_token": "hmac-sha256:989b37e853916f7e066781547a49c121485edde5c9d9aa168a4a2db7fe5f484e",
	"display_name": "token",
	"policies": ["root"],
	"policy_results": {"allowed": true, "granting_policies": [{"type": ""}, {"name": "root", "namespace_id": "root", "type": "acl"}]},
	"token_policies": ["root"],
	"token_issue_time": "2026-11-25T19:23:27Z",
	"token_type": "service"
}`

// authAlice115 is alice's auth block as Vault 1.15 writes it (no
// policy_results).
const authAlice115 = `"auth": {
	"accessor": "hmac-sha256:3238940e4967e95d953bc0f1ae592f5a02f51252e61207e675b3235bf97126d5",
	"client_token": "hmac-sha256:b056e18ae5848fec282b16b66a5ed14fa914658c929fc43c20200c5c13a4dbc6",
	"display_name": "userpass-alice",
	"entity_id": "ffe23c2c-69ab-e043-c810-bf24e5df3f4b",
	"metadata": {"username": "alice"},
	"policies": ["default", "rep"],
	"token_policies": ["default", "rep"],
	"token_ttl": 2764800,
	"token_type": "service"
}`

// Well-formed entries.
const (
	// Fixture line 20 shape: tuned mount, plain username.
	entryIssuePlain = `{
	` + authAlice + `,
	"request": {
		"client_id": "ffe23c2c-69ab-e043-c810-bf24e5df3f4b",
		"client_token": "hmac-sha256:8f36033e456f4384bfeb0a243b5b13c0e85407b69ce181c702c6a9c5d0948ad3",
		"client_token_accessor": "hmac-sha256:3238940e4967e95d953bc0f1ae592f5a02f51252e61207e675b3235bf97126d5",
		"headers": {"user-agent": ["Go-http-client/1.1"]},
		"id": "4212eee2-8290-1b2a-c91e-d7d62037a171",
		"mount_accessor": "database_0f55551a",
		"mount_class": "secret",
		"mount_point": "postgres/",
		"mount_running_version": "v1.21.0+builtin.vault",
		"mount_type": "database",
		"namespace": {"id": "root"},
		"operation": "read",
		"path": "postgres/creds/reporting",
		"remote_address": "127.0.0.1",
		"remote_port": 35424
	},
	"response": {
		"data": {
			"password": "hmac-sha256:f975236207194dee6ecc77694f17226fbaf4664d2ae76803f003c2919f0cefdf",
			"username": "v-userpass-reportin-k1B0cLsSUMNiuIuIwYGR-1795634613"
		},
		"mount_accessor": "database_0f55551a",
		"mount_class": "secret",
		"mount_point": "postgres/",
		"mount_running_plugin_version": "v1.21.0+builtin.vault",
		"mount_type": "database",
		"secret": {"lease_id": "postgres/creds/reporting/BVxdHcrIEYFA7L6GbncZv1h1"}
	},
	"time": "2026-11-25T19:23:33.507975384Z",
	"type": "response"
}`

	// Untuned mount: the username is an HMAC. Client behind a port.
	entryIssueHMAC = `{
	` + authAlice + `,
	"request": {
		"client_id": "ffe23c2c-69ab-e043-c810-bf24e5df3f4b",
		"client_token": "hmac-sha256:8f36033e456f4384bfeb0a243b5b13c0e85407b69ce181c702c6a9c5d0948ad3",
		"client_token_accessor": "hmac-sha256:3238940e4967e95d953bc0f1ae592f5a02f51252e61207e675b3235bf97126d5",
		"id": "0b7a1c4e-51aa-2b1e-77d0-3e2f0a6c9d11",
		"mount_accessor": "database_0f55551a",
		"mount_class": "secret",
		"mount_point": "postgres/",
		"mount_running_version": "v1.21.0+builtin.vault",
		"mount_type": "database",
		"namespace": {"id": "root"},
		"operation": "read",
		"path": "postgres/creds/reporting",
		"remote_address": "10.0.0.1:5555",
		"remote_port": 5555
	},
	"response": {
		"data": {
			"password": "hmac-sha256:0d3c5b2a0f5e8a7e0c1b9e8d7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a",
			"username": "hmac-sha256:7e2d0c1f4b3a5968d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4"
		},
		"mount_accessor": "database_0f55551a",
		"mount_class": "secret",
		"mount_point": "postgres/",
		"mount_running_plugin_version": "v1.21.0+builtin.vault",
		"mount_type": "database",
		"secret": {"lease_id": "postgres/creds/reporting/Qm3xT9kLpZ2vN8rYc4HwEa7J"}
	},
	"time": "2026-11-25T19:30:00.000000001Z",
	"type": "response"
}`

	// Vault 1.15: the response repeats no mount fields; POST (update) read.
	entryIssue115 = `{
	` + authAlice115 + `,
	"request": {
		"client_token": "hmac-sha256:8f36033e456f4384bfeb0a243b5b13c0e85407b69ce181c702c6a9c5d0948ad3",
		"client_token_accessor": "hmac-sha256:3238940e4967e95d953bc0f1ae592f5a02f51252e61207e675b3235bf97126d5",
		"id": "9c1f2e3d-4b5a-6978-8a9b-0c1d2e3f4a5b",
		"mount_accessor": "database_0f55551a",
		"mount_point": "db/prod/",
		"mount_type": "database",
		"namespace": {"id": "root"},
		"operation": "update",
		"path": "db/prod/creds/app-rw",
		"remote_address": "192.168.10.4"
	},
	"response": {
		"data": {
			"password": "hmac-sha256:aa3c5b2a0f5e8a7e0c1b9e8d7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a",
			"username": "v-userpass-app-rw-8vQmZ1xT0pLk3NcR7wYs-1795634700"
		},
		"secret": {"lease_id": "db/prod/creds/app-rw/Yt5UeR2wQ8iO1pA4sD7fG0hJ"}
	},
	"time": "2025-06-01T08:00:00.123456789Z",
	"type": "response"
}`

	// Vault Enterprise, namespace team-a: the path and the lease id are
	// relative to the namespace, the lease id has the namespace id suffix.
	// The client is IPv6 with a port.
	entryIssueNamespaced = `{
	` + authAlice + `,
	"request": {
		"client_id": "ffe23c2c-69ab-e043-c810-bf24e5df3f4b",
		"client_token": "hmac-sha256:8f36033e456f4384bfeb0a243b5b13c0e85407b69ce181c702c6a9c5d0948ad3",
		"client_token_accessor": "hmac-sha256:3238940e4967e95d953bc0f1ae592f5a02f51252e61207e675b3235bf97126d5",
		"id": "5d6e7f80-91a2-b3c4-d5e6-f708192a3b4c",
		"mount_accessor": "database_1a2b3c4d",
		"mount_class": "secret",
		"mount_point": "postgres/",
		"mount_running_version": "v1.21.0+builtin.vault",
		"mount_type": "database",
		"namespace": {"id": "ns1id", "path": "team-a/"},
		"operation": "read",
		"path": "postgres/creds/reporting",
		"remote_address": "[2001:db8::7]:5555",
		"remote_port": 5555
	},
	"response": {
		"data": {
			"password": "hmac-sha256:bb3c5b2a0f5e8a7e0c1b9e8d7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a",
			"username": "v-userpass-reportin-Zz9Yy8Xx7Ww6Vv5Uu4Tt-1795634800"
		},
		"mount_accessor": "database_1a2b3c4d",
		"mount_class": "secret",
		"mount_point": "postgres/",
		"mount_running_plugin_version": "v1.21.0+builtin.vault",
		"mount_type": "database",
		"secret": {"lease_id": "postgres/creds/reporting/Hk2Lm3Nn4Pp5Qq6Rr7Ss8Tt9.ns1id"}
	},
	"time": "2026-11-25T21:00:00Z",
	"type": "response"
}`

	// Fixture line 19 shape.
	entryCredsRequest = `{
	` + authAlice + `,
	"request": {
		"client_id": "ffe23c2c-69ab-e043-c810-bf24e5df3f4b",
		"client_token": "hmac-sha256:8f36033e456f4384bfeb0a243b5b13c0e85407b69ce181c702c6a9c5d0948ad3",
		"client_token_accessor": "hmac-sha256:3238940e4967e95d953bc0f1ae592f5a02f51252e61207e675b3235bf97126d5",
		"headers": {"user-agent": ["Go-http-client/1.1"]},
		"id": "4212eee2-8290-1b2a-c91e-d7d62037a171",
		"mount_class": "secret",
		"mount_point": "postgres/",
		"mount_running_version": "v1.21.0+builtin.vault",
		"mount_type": "database",
		"namespace": {"id": "root"},
		"operation": "read",
		"path": "postgres/creds/reporting",
		"remote_address": "127.0.0.1",
		"remote_port": 35424
	},
	"time": "2026-11-25T19:23:33.495760787Z",
	"type": "request"
}`

	// Request entry inside a namespace, mount_point logged with the
	// namespace path, remote address IPv6 without port.
	entryCredsRequestNamespaced = `{
	` + authAlice + `,
	"request": {
		"id": "5d6e7f80-91a2-b3c4-d5e6-f708192a3b4c",
		"mount_point": "team-a/postgres/",
		"mount_type": "database",
		"namespace": {"id": "ns1id", "path": "team-a/"},
		"operation": "read",
		"path": "postgres/creds/reporting",
		"remote_address": "2001:db8::7"
	},
	"time": "2026-11-25T20:59:59.9Z",
	"type": "request"
}`

	// Vault refused (policy): the request entry carries the top-level error
	// (fixture line 27).
	entryCredsRequestDenied = `{
	` + authAlice + `,
	"error": "1 error occurred:\n\t* permission denied\n\n",
	"request": {
		"id": "d3d424fc-8bd9-eb02-2e3f-7ffc1fc65198",
		"mount_class": "secret",
		"mount_point": "postgres/",
		"mount_type": "database",
		"namespace": {"id": "root"},
		"operation": "read",
		"path": "postgres/creds/other",
		"remote_address": "127.0.0.1",
		"remote_port": 35462
	},
	"time": "2026-11-25T19:23:34.37325223Z",
	"type": "request"
}`

	// Fixture line 28: top-level error and response.data.error.
	entryCredsResponseDenied = `{
	` + authAlice + `,
	"error": "1 error occurred:\n\t* permission denied\n\n",
	"request": {
		"id": "d3d424fc-8bd9-eb02-2e3f-7ffc1fc65198",
		"mount_class": "secret",
		"mount_point": "postgres/",
		"mount_type": "database",
		"namespace": {"id": "root"},
		"operation": "read",
		"path": "postgres/creds/other",
		"remote_address": "127.0.0.1",
		"remote_port": 35462
	},
	"response": {
		"data": {"error": "hmac-sha256:6130f1632366ec456c854652096d0c05996f357a6d7c89310bf7f367b534ad7e"},
		"mount_class": "secret",
		"mount_point": "postgres/",
		"mount_running_plugin_version": "v1.21.0+builtin.vault",
		"mount_type": "database"
	},
	"time": "2026-11-25T19:23:34.373781392Z",
	"type": "response"
}`

	// A backend error (unknown role) with no top-level error.
	entryCredsResponseBackendError = `{
	` + authAlice + `,
	"request": {
		"id": "e1f2a3b4-c5d6-e7f8-091a-2b3c4d5e6f70",
		"mount_point": "postgres/",
		"mount_type": "database",
		"namespace": {"id": "root"},
		"operation": "read",
		"path": "postgres/creds/nosuchrole",
		"remote_address": "127.0.0.1"
	},
	"response": {
		"data": {"error": "hmac-sha256:1d2c3b4a59687766554433221100ffeeddccbbaa99887766554433221100ffee"},
		"mount_point": "postgres/",
		"mount_type": "database"
	},
	"time": "2026-11-25T19:40:00Z",
	"type": "response"
}`

	// A wrapped creds response: no secret, no data.
	entryCredsResponseWrapped = `{
	` + authAlice + `,
	"request": {
		"id": "77aa88bb-99cc-aadd-bbee-ccff00112233",
		"mount_point": "postgres/",
		"mount_type": "database",
		"namespace": {"id": "root"},
		"operation": "read",
		"path": "postgres/creds/reporting",
		"remote_address": "127.0.0.1",
		"wrap_ttl": 60
	},
	"response": {
		"mount_point": "postgres/",
		"mount_type": "database",
		"wrap_info": {"accessor": "hmac-sha256:00aa", "creation_path": "postgres/creds/reporting", "creation_time": "2026-11-25T19:41:00Z", "token": "hmac-sha256:11bb", "ttl": 60}
	},
	"time": "2026-11-25T19:41:00Z",
	"type": "response"
}`

	// Fixture line 24 shape.
	entryRenew = `{
	` + authAlice + `,
	"request": {
		"client_id": "ffe23c2c-69ab-e043-c810-bf24e5df3f4b",
		"client_token": "hmac-sha256:8f36033e456f4384bfeb0a243b5b13c0e85407b69ce181c702c6a9c5d0948ad3",
		"client_token_accessor": "hmac-sha256:3238940e4967e95d953bc0f1ae592f5a02f51252e61207e675b3235bf97126d5",
		"data": {
			"increment": "hmac-sha256:bf9470c05a1662a40902ee65882d991a852f68b58ceb870875a8b85f8af262bc",
			"lease_id": "hmac-sha256:6103d880693b4a9744815e59658063faae02c97b4e70893060b0452cc5234fc9"
		},
		"headers": {"user-agent": ["Go-http-client/1.1"]},
		"id": "6d8926cd-fe2c-4a94-5d68-f1fa1b1032f5",
		"mount_accessor": "system_304a8fde",
		"mount_class": "secret",
		"mount_point": "sys/",
		"mount_running_version": "v1.21.0+builtin.vault",
		"mount_type": "system",
		"namespace": {"id": "root"},
		"operation": "update",
		"path": "sys/leases/renew",
		"remote_address": "127.0.0.1",
		"remote_port": 35444
	},
	"response": {
		"mount_accessor": "system_304a8fde",
		"mount_class": "secret",
		"mount_point": "sys/",
		"mount_running_plugin_version": "v1.21.0+builtin.vault",
		"mount_type": "system",
		"secret": {"lease_id": "postgres/creds/reporting/BVxdHcrIEYFA7L6GbncZv1h1"}
	},
	"time": "2026-11-25T19:23:33.940547296Z",
	"type": "response"
}`

	// Renew request entry: no lease event until the response.
	entryRenewRequest = `{
	` + authAlice + `,
	"request": {
		"data": {"increment": "hmac-sha256:bf94", "lease_id": "hmac-sha256:6103"},
		"id": "6d8926cd-fe2c-4a94-5d68-f1fa1b1032f5",
		"mount_point": "sys/",
		"mount_type": "system",
		"namespace": {"id": "root"},
		"operation": "update",
		"path": "sys/leases/renew",
		"remote_address": "127.0.0.1"
	},
	"time": "2026-11-25T19:23:33.93584874Z",
	"type": "request"
}`

	// Legacy sys/renew/<lease id> in a namespace (Vault 1.15).
	entryRenewLegacyNamespaced = `{
	` + authAlice115 + `,
	"request": {
		"id": "aa11bb22-cc33-dd44-ee55-ff6600778899",
		"mount_point": "sys/",
		"mount_type": "system",
		"namespace": {"id": "ns1id", "path": "team-a/"},
		"operation": "update",
		"path": "sys/renew/postgres/creds/reporting/Hk2Lm3Nn4Pp5Qq6Rr7Ss8Tt9.ns1id",
		"remote_address": "10.1.2.3"
	},
	"response": {
		"secret": {"lease_id": "postgres/creds/reporting/Hk2Lm3Nn4Pp5Qq6Rr7Ss8Tt9.ns1id"}
	},
	"time": "2025-06-01T09:00:00Z",
	"type": "response"
}`

	// Renewing a token lease answers with auth, no secret.
	entryRenewToken = `{
	` + authAlice + `,
	"request": {
		"data": {"lease_id": "hmac-sha256:77ee"},
		"id": "b0b1b2b3-b4b5-b6b7-b8b9-babbbcbdbebf",
		"mount_point": "sys/",
		"mount_type": "system",
		"namespace": {"id": "root"},
		"operation": "update",
		"path": "sys/leases/renew",
		"remote_address": "127.0.0.1"
	},
	"response": {
		"auth": {"accessor": "hmac-sha256:3238", "client_token": "hmac-sha256:b056", "display_name": "userpass-alice", "token_ttl": 2764800, "token_type": "service"},
		"mount_point": "sys/",
		"mount_type": "system"
	},
	"time": "2026-11-25T19:50:00Z",
	"type": "response"
}`

	// Renew of an expired lease: backend error.
	entryRenewError = `{
	` + authAlice + `,
	"request": {
		"data": {"lease_id": "hmac-sha256:6103"},
		"id": "c0c1c2c3-c4c5-c6c7-c8c9-cacbcccdcecf",
		"mount_point": "sys/",
		"mount_type": "system",
		"namespace": {"id": "root"},
		"operation": "update",
		"path": "sys/leases/renew",
		"remote_address": "127.0.0.1"
	},
	"response": {
		"data": {"error": "hmac-sha256:2e3f"},
		"mount_point": "sys/",
		"mount_type": "system"
	},
	"time": "2026-11-25T19:51:00Z",
	"type": "response"
}`

	// Fixture line 26: CLI revoke by path; 202 in response.data is success.
	entryRevokePath = `{
	` + authRoot + `,
	"request": {
		"client_id": "0DHqvq2D77kL2/JTPSZkTMJbkFVmUu0TzMi0jiXcFy8=",
		"client_token": "hmac-sha256:989b37e853916f7e066781547a49c121485edde5c9d9aa168a4a2db7fe5f484e",
		"client_token_accessor": "hmac-sha256:268540f40e6435a27bdc3943103f9588e78b6ba50651cab8090ce305f73a8ad7",
		"data": {"sync": false},
		"headers": {"user-agent": ["Go-http-client/1.1"]},
		"id": "9673f3c2-c9c8-1197-abf2-b09312f412ce",
		"mount_accessor": "system_304a8fde",
		"mount_class": "secret",
		"mount_point": "sys/",
		"mount_running_version": "v1.21.0+builtin.vault",
		"mount_type": "system",
		"namespace": {"id": "root"},
		"operation": "update",
		"path": "sys/leases/revoke/postgres/creds/reporting/8nWWwOUCdLMHSwa4a73Jzoqw",
		"remote_address": "127.0.0.1",
		"remote_port": 35448
	},
	"response": {
		"data": {
			"http_content_type": "hmac-sha256:331fe9816ec3917e676d42ae29db661de43fa87da70bb4bb7a3fa841ff594787",
			"http_status_code": 202
		},
		"mount_accessor": "system_304a8fde",
		"mount_class": "secret",
		"mount_point": "sys/",
		"mount_running_plugin_version": "v1.21.0+builtin.vault",
		"mount_type": "system"
	},
	"time": "2026-11-25T19:23:34.14197696Z",
	"type": "response"
}`

	// Legacy sys/revoke/<lease id>, namespaced lease, IPv6 client.
	entryRevokeLegacyNamespaced = `{
	` + authRoot + `,
	"request": {
		"data": {"sync": true},
		"id": "d0d1d2d3-d4d5-d6d7-d8d9-dadbdcdddedf",
		"mount_point": "sys/",
		"mount_type": "system",
		"namespace": {"id": "ns1id", "path": "team-a/"},
		"operation": "update",
		"path": "sys/revoke/postgres/creds/reporting/Hk2Lm3Nn4Pp5Qq6Rr7Ss8Tt9.ns1id",
		"remote_address": "::1"
	},
	"response": {"mount_point": "sys/", "mount_type": "system"},
	"time": "2026-11-25T21:10:00Z",
	"type": "response"
}`

	// API revoke with the lease id in the body: hashed (sys/ cannot be
	// tuned).
	entryRevokeBodyHashed = `{
	` + authRoot + `,
	"request": {
		"data": {"lease_id": "hmac-sha256:9a8b7c6d5e4f30211203f4e5d6c7b8a99a8b7c6d5e4f30211203f4e5d6c7b8a9", "sync": true},
		"id": "e0e1e2e3-e4e5-e6e7-e8e9-eaebecedeeef",
		"mount_accessor": "system_304a8fde",
		"mount_class": "secret",
		"mount_point": "sys/",
		"mount_running_version": "v1.21.0+builtin.vault",
		"mount_type": "system",
		"namespace": {"id": "root"},
		"operation": "update",
		"path": "sys/leases/revoke",
		"remote_address": "127.0.0.1",
		"remote_port": 35500
	},
	"response": {
		"mount_accessor": "system_304a8fde",
		"mount_class": "secret",
		"mount_point": "sys/",
		"mount_running_plugin_version": "v1.21.0+builtin.vault",
		"mount_type": "system"
	},
	"time": "2026-11-25T19:45:00Z",
	"type": "response"
}`

	// The same from a device with log_raw: the body lease id is plain.
	entryRevokeBodyPlain = `{
	` + authRoot + `,
	"request": {
		"data": {"lease_id": "postgres/creds/reporting/Qm3xT9kLpZ2vN8rYc4HwEa7J", "sync": true},
		"id": "f0f1f2f3-f4f5-f6f7-f8f9-fafbfcfdfeff",
		"mount_point": "sys/",
		"mount_type": "system",
		"namespace": {"id": "root"},
		"operation": "update",
		"path": "sys/leases/revoke",
		"remote_address": "127.0.0.1"
	},
	"response": {"mount_point": "sys/", "mount_type": "system"},
	"time": "2026-11-25T19:46:00Z",
	"type": "response"
}`

	// Revoke request entry: nothing until the response.
	entryRevokeRequest = `{
	` + authRoot + `,
	"request": {
		"data": {"sync": false},
		"id": "9673f3c2-c9c8-1197-abf2-b09312f412ce",
		"mount_point": "sys/",
		"mount_type": "system",
		"namespace": {"id": "root"},
		"operation": "update",
		"path": "sys/leases/revoke/postgres/creds/reporting/8nWWwOUCdLMHSwa4a73Jzoqw",
		"remote_address": "127.0.0.1"
	},
	"time": "2026-11-25T19:23:34.139519948Z",
	"type": "request"
}`

	// Revoke refused by policy.
	entryRevokeDenied = `{
	` + authAlice + `,
	"error": "1 error occurred:\n\t* permission denied\n\n",
	"request": {
		"id": "a9a8a7a6-a5a4-a3a2-a1a0-9f9e9d9c9b9a",
		"mount_point": "sys/",
		"mount_type": "system",
		"namespace": {"id": "root"},
		"operation": "update",
		"path": "sys/leases/revoke/postgres/creds/reporting/8nWWwOUCdLMHSwa4a73Jzoqw",
		"remote_address": "127.0.0.1"
	},
	"response": {"data": {"error": "hmac-sha256:5f5e"}, "mount_point": "sys/", "mount_type": "system"},
	"time": "2026-11-25T19:47:00Z",
	"type": "response"
}`

	// Revoke answered with a backend error only.
	entryRevokeBackendError = `{
	` + authRoot + `,
	"request": {
		"data": {"lease_id": "hmac-sha256:9a8b"},
		"id": "b9b8b7b6-b5b4-b3b2-b1b0-afaeadacabaa",
		"mount_point": "sys/",
		"mount_type": "system",
		"namespace": {"id": "root"},
		"operation": "update",
		"path": "sys/leases/revoke",
		"remote_address": "127.0.0.1"
	},
	"response": {"data": {"error": "hmac-sha256:6a6b"}, "mount_point": "sys/", "mount_type": "system"},
	"time": "2026-11-25T19:48:00Z",
	"type": "response"
}`

	entryRevokePrefix = `{
	` + authRoot + `,
	"request": {
		"data": {"sync": true},
		"id": "c9c8c7c6-c5c4-c3c2-c1c0-bfbebdbcbbba",
		"mount_point": "sys/",
		"mount_type": "system",
		"namespace": {"id": "root"},
		"operation": "update",
		"path": "sys/leases/revoke-prefix/postgres/creds/reporting/",
		"remote_address": "127.0.0.1:61000",
		"remote_port": 61000
	},
	"response": {"data": {"http_content_type": "hmac-sha256:331f", "http_status_code": 202}, "mount_point": "sys/", "mount_type": "system"},
	"time": "2026-11-25T20:00:00Z",
	"type": "response"
}`

	entryRevokeForce = `{
	` + authRoot + `,
	"request": {
		"id": "d9d8d7d6-d5d4-d3d2-d1d0-cfcecdcccbca",
		"mount_point": "sys/",
		"mount_type": "system",
		"namespace": {"id": "root"},
		"operation": "update",
		"path": "sys/leases/revoke-force/postgres/",
		"remote_address": "127.0.0.1"
	},
	"response": {"mount_point": "sys/", "mount_type": "system"},
	"time": "2026-11-25T20:01:00Z",
	"type": "response"
}`

	entryRevokePrefixLegacy = `{
	` + authRoot + `,
	"request": {
		"id": "e9e8e7e6-e5e4-e3e2-e1e0-dfdedddcdbda",
		"mount_point": "sys/",
		"mount_type": "system",
		"namespace": {"id": "ns1id", "path": "team-a/"},
		"operation": "update",
		"path": "sys/revoke-prefix/postgres/creds/",
		"remote_address": "127.0.0.1"
	},
	"response": {},
	"time": "2025-06-01T10:00:00Z",
	"type": "response"
}`

	// Fixture line 1.
	entryAuditTest = `{"request":{"id":"5ab5759c-a302-0bb4-aa40-9526e73a66a3","namespace":{"id":"root"},"operation":"update","path":"sys/audit/test"},"time":"2026-11-25T19:23:31.271320831Z","type":"request"}`

	// Vault Enterprise KMIP entry.
	entryKMIP = `{
	"time": "2026-11-25T20:10:00Z",
	"type": "kmip-request",
	"auth": {"display_name": "kmip-client"},
	"request": {"id": "kmip-0001", "operation": "", "path": "kmip/scope/s1/role/r1", "data": {"operation": "Create"}}
}`

	// A non-lease response of about 1.5 KB: token lookup-self.
	entryTokenLookup = `{
	` + authAlice + `,
	"request": {
		"client_token": "hmac-sha256:8f36033e456f4384bfeb0a243b5b13c0e85407b69ce181c702c6a9c5d0948ad3",
		"client_token_accessor": "hmac-sha256:3238940e4967e95d953bc0f1ae592f5a02f51252e61207e675b3235bf97126d5",
		"id": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
		"mount_accessor": "auth_token_5b7a9c21",
		"mount_class": "auth",
		"mount_point": "auth/token/",
		"mount_type": "token",
		"namespace": {"id": "root"},
		"operation": "read",
		"path": "auth/token/lookup-self",
		"remote_address": "127.0.0.1",
		"remote_port": 35600
	},
	"response": {
		"data": {
			"accessor": "hmac-sha256:3238940e4967e95d953bc0f1ae592f5a02f51252e61207e675b3235bf97126d5",
			"creation_time": 1795634613,
			"creation_ttl": 2764800,
			"id": "hmac-sha256:8f36033e456f4384bfeb0a243b5b13c0e85407b69ce181c702c6a9c5d0948ad3",
			"num_uses": 0,
			"orphan": true,
			"policies": ["hmac-sha256:0a1b", "hmac-sha256:1b2c"],
			"renewable": true,
			"ttl": 2764000
		},
		"mount_type": "token"
	},
	"time": "2026-11-25T19:55:00Z",
	"type": "response"
}`

	// creds on a non-database mount (AWS): not ours.
	entryAWSCreds = `{
	` + authAlice + `,
	"request": {
		"id": "a0a1a2a3-a4a5-a6a7-a8a9-aaabacadaeaf",
		"mount_point": "aws/",
		"mount_type": "aws",
		"namespace": {"id": "root"},
		"operation": "read",
		"path": "aws/creds/deploy",
		"remote_address": "127.0.0.1"
	},
	"response": {
		"data": {"access_key": "hmac-sha256:0a0b", "secret_key": "hmac-sha256:0c0d"},
		"mount_point": "aws/",
		"mount_type": "aws",
		"secret": {"lease_id": "aws/creds/deploy/Zx8Cv7Bn6Mm5Ll4Kk3Jj2Hh1"}
	},
	"time": "2026-11-25T19:56:00Z",
	"type": "response"
}`

	// static-creds are not leases.
	entryStaticCreds = `{
	` + authAlice + `,
	"request": {
		"id": "b0a1a2a3-a4a5-a6a7-a8a9-aaabacadaeaf",
		"mount_point": "postgres/",
		"mount_type": "database",
		"namespace": {"id": "root"},
		"operation": "read",
		"path": "postgres/static-creds/app",
		"remote_address": "127.0.0.1"
	},
	"response": {
		"data": {"username": "app", "password": "hmac-sha256:0c0d", "ttl": 3000},
		"mount_point": "postgres/",
		"mount_type": "database"
	},
	"time": "2026-11-25T19:57:00Z",
	"type": "response"
}`

	// Role management on a database mount (fixture line 10 shape).
	entryDatabaseRole = `{
	` + authRoot + `,
	"request": {
		"data": {"creation_statements": ["hmac-sha256:aa"], "db_name": "hmac-sha256:bb", "default_ttl": "hmac-sha256:cc"},
		"id": "c0a1a2a3-a4a5-a6a7-a8a9-aaabacadaeaf",
		"mount_point": "postgres/",
		"mount_type": "database",
		"namespace": {"id": "root"},
		"operation": "create",
		"path": "postgres/roles/reporting",
		"remote_address": "127.0.0.1"
	},
	"response": {"mount_point": "postgres/", "mount_type": "database"},
	"time": "2026-11-25T19:23:32Z",
	"type": "response"
}`
)

// Entries that are valid JSON but contradict how Vault writes its log.
const (
	entryIssueEmptyLeaseID = `{
	` + authAlice + `,
	"request": {"id": "dl-1", "mount_point": "postgres/", "mount_type": "database", "namespace": {"id": "root"}, "operation": "read", "path": "postgres/creds/reporting"},
	"response": {"data": {"username": "v-x"}, "mount_type": "database", "secret": {}},
	"time": "2026-11-25T19:23:33Z",
	"type": "response"
}`
	entryIssueHashedLeaseID = `{
	` + authAlice + `,
	"request": {"id": "dl-2", "mount_point": "postgres/", "mount_type": "database", "namespace": {"id": "root"}, "operation": "read", "path": "postgres/creds/reporting"},
	"response": {"data": {"username": "v-x"}, "mount_type": "database", "secret": {"lease_id": "hmac-sha256:00ff"}},
	"time": "2026-11-25T19:23:33Z",
	"type": "response"
}`
	entryRenewHashedLeaseID = `{
	` + authAlice + `,
	"request": {"id": "dl-3", "mount_point": "sys/", "mount_type": "system", "namespace": {"id": "root"}, "operation": "update", "path": "sys/leases/renew"},
	"response": {"secret": {"lease_id": "hmac-sha256:00ff"}},
	"time": "2026-11-25T19:23:33Z",
	"type": "response"
}`
	entryRevokeBodyMissing = `{
	` + authRoot + `,
	"request": {"id": "dl-4", "mount_point": "sys/", "mount_type": "system", "namespace": {"id": "root"}, "operation": "update", "path": "sys/leases/revoke", "data": {"sync": true}},
	"response": {},
	"time": "2026-11-25T19:23:33Z",
	"type": "response"
}`
	entryRevokePrefixEmpty = `{
	` + authRoot + `,
	"request": {"id": "dl-5", "mount_point": "sys/", "mount_type": "system", "namespace": {"id": "root"}, "operation": "update", "path": "sys/leases/revoke-force/"},
	"response": {},
	"time": "2026-11-25T19:23:33Z",
	"type": "response"
}`
)
