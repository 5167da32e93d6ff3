package handler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"

	"github.com/wemesse/server/internal/model"
)

// statusClientClosed records a request whose client hung up first.
const statusClientClosed = 499

// maxJSONBytes bounds every JSON request body.
const maxJSONBytes = 64 << 10

// statusOf maps each error code to its HTTP status.
var statusOf = map[model.Code]int{
	model.Invalid:       http.StatusBadRequest,
	model.NotFound:      http.StatusNotFound,
	model.Conflict:      http.StatusConflict,
	model.Unauthorized:  http.StatusUnauthorized,
	model.Forbidden:     http.StatusForbidden,
	model.NotAllowed:    http.StatusMethodNotAllowed,
	model.TooLarge:      http.StatusRequestEntityTooLarge,
	model.Unsupported:   http.StatusUnsupportedMediaType,
	model.Unprocessable: http.StatusUnprocessableEntity,
	model.TooMany:       http.StatusTooManyRequests,
	model.Unavailable:   http.StatusServiceUnavailable,
	model.Internal:      http.StatusInternalServerError,
}

// encode writes v as JSON with the given status.
func encode[T any](w http.ResponseWriter, status int, v T) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client may be gone; nothing to add
}

// decode reads a JSON body of at most maxJSONBytes into a T. Unknown keys
// are ignored; anything after the object is an error.
func decode[T any](w http.ResponseWriter, r *http.Request) (T, error) {
	var v T
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBytes))
	err := dec.Decode(&v)
	if err == nil {
		// Only white space may follow. (dec.More reports false for a stray
		// ']' or '}', so it cannot tell.)
		if _, terr := dec.Token(); terr == nil {
			err = errors.New("trailing data")
		} else if terr != io.EOF {
			err = terr
		}
	}
	if err == nil {
		return v, nil
	}
	return v, decodeError(err)
}

// decodeError turns an error of reading or decoding a JSON body into a
// model error.
func decodeError(err error) error {
	var tooLarge *http.MaxBytesError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.Is(err, errBodyTooSlow):
		return model.Errorf(model.Invalid, "The body arrived too slowly.")
	case errors.As(err, &tooLarge):
		return model.Errorf(model.TooLarge, "The body is larger than %d bytes.", maxJSONBytes)
	case errors.As(err, &typeErr) && typeErr.Field != "":
		return model.Errorf(model.Invalid, "%s must be a JSON %s.", typeErr.Field, jsonKind(typeErr.Type.Kind().String()))
	case errors.As(err, &typeErr), errors.Is(err, io.EOF):
		return model.Errorf(model.Invalid, "The body must be a JSON object.")
	}
	return model.Errorf(model.Invalid, "The body is not valid JSON: %s.", strings.TrimPrefix(err.Error(), "json: "))
}

// decodeStrict is decode for bodies whose every key must be one of T's
// JSON keys, spelled exactly: unknown keys get Invalid, naming them all.
func decodeStrict[T any](w http.ResponseWriter, r *http.Request) (T, error) {
	var v T
	raw, err := decode[map[string]json.RawMessage](w, r)
	if err != nil {
		return v, err
	}
	known := jsonKeys(reflect.TypeFor[T]())
	var unknown []string
	for k := range raw {
		if !slices.Contains(known, k) {
			unknown = append(unknown, strconv.Quote(k))
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return v, model.Errorf(model.Invalid, "Unknown fields: %s. The known fields are %s.", strings.Join(unknown, ", "), strings.Join(known, ", "))
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, decodeError(err)
	}
	return v, nil
}

// jsonKeys lists the JSON keys of a struct type's fields.
func jsonKeys(t reflect.Type) []string {
	var keys []string
	for f := range t.Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	return keys
}

// optional is a JSON field that can tell absent (Set false) from null
// (Set true, Value nil).
type optional[T any] struct {
	Set   bool
	Value *T
}

// UnmarshalJSON is called for a present key, null included.
func (o *optional[T]) UnmarshalJSON(b []byte) error {
	o.Set = true
	if string(b) == "null" {
		o.Value = nil
		return nil
	}
	o.Value = new(T)
	return json.Unmarshal(b, o.Value)
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "bool":
		return "boolean"
	case "struct", "map":
		return "object"
	case "slice", "array":
		return "array"
	}
	return "integer"
}

// fail writes err as a JSON error, with the status statusOf gives its
// code: every error response goes through here. Errors without a code are
// logged once, with the request id, and reach the client as a plain
// "Internal error.".
func fail(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client hung up; nobody reads this answer, and it is not the
		// server's failure. 499 is nginx's code for it, in logs and metrics.
		log.InfoContext(r.Context(), "client went away", "request_id", requestIDOf(w))
		w.WriteHeader(statusClientClosed)
		return
	}
	code := model.ErrorCode(err)
	status := statusOf[code]
	if status == 0 {
		status = http.StatusInternalServerError
	}
	switch code {
	case model.Internal:
		log.ErrorContext(r.Context(), "request failed", "request_id", requestIDOf(w), "err", err)
	case model.Unavailable:
		log.WarnContext(r.Context(), "request failed", "request_id", requestIDOf(w), "err", err)
		w.Header().Set("Retry-After", "1")
	}
	encode(w, status, struct {
		Error string `json:"error"`
	}{model.ErrorMessage(err)})
}

// recoverJSON turns a panic into a logged 500 JSON error.
func recoverJSON(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				rec := recover()
				if rec == nil {
					return
				}
				if rec == http.ErrAbortHandler {
					panic(rec)
				}
				fail(w, r, log, fmt.Errorf("panic: %v\n%s", rec, debug.Stack()))
			}()
			next.ServeHTTP(w, r)
		})
	}
}
