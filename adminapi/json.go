package adminapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
)

// errorBody is every error response: {"error": "..."}.
type errorBody struct {
	Error string `json:"error"`
}

// writeJSON writes v as the JSON response with status code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		code = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"error":"encode response"}` + "\n")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

func writeError(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, errorBody{Error: fmt.Sprintf(format, args...)})
}

// requestError is a client error: its status and the message the client
// gets.
type requestError struct {
	code int
	msg  string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &requestError{code: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// decodeJSON strictly decodes one JSON object from r's body into v: the
// content type must be JSON (so a browser cannot send it cross-site without
// a preflight), the body is at most max bytes, unknown fields and anything
// after the object are refused.
func decodeJSON(w http.ResponseWriter, r *http.Request, max int64, v any) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return &requestError{code: http.StatusUnsupportedMediaType, msg: "the body must be application/json"}
	}
	if r.ContentLength > max {
		return &requestError{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("the body is larger than %d bytes", max)}
	}
	body := http.MaxBytesReader(w, r.Body, max)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err, max)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return decodeError(err, max)
		}
		return badRequest("the body holds more than one JSON value")
	}
	return nil
}

func decodeError(err error, max int64) error {
	var tooBig *http.MaxBytesError
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooBig):
		return &requestError{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("the body is larger than %d bytes", max)}
	case errors.Is(err, io.EOF):
		return badRequest("the body is empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("the body is truncated JSON")
	case errors.As(err, &syntax):
		return badRequest("the body is not valid JSON (at byte %d)", syntax.Offset)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return badRequest("field %q: want %s", typ.Field, typ.Type)
		}
		return badRequest("the body must be a JSON object")
	}
	// DisallowUnknownFields: `json: unknown field "x"`.
	return badRequest("%s", trimJSONPrefix(err.Error()))
}

func trimJSONPrefix(s string) string {
	const p = "json: "
	if len(s) > len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}
