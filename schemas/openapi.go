package schemas

import _ "embed"

// OpenAPI is the OpenAPI 3.1 description of the admin HTTP API (package
// adminapi), as JSON. Its component schemas are JSON Schema 2020-12; a test
// of adminapi checks the handlers against it.
//
//go:embed openapi.json
var OpenAPI []byte
