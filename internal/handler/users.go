package handler

import (
	"bufio"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/wemesse/server/internal/model"
	"github.com/wemesse/server/internal/service"
)

// userRequest is a device session report; unknown keys are ignored.
type userRequest struct {
	AppLocale       string `json:"AppLocale"`
	AppVersion      string `json:"AppVersion"`
	DeviceLocale    string `json:"DeviceLocale"`
	DeviceMac       string `json:"DeviceMac"`
	DeviceModel     string `json:"DeviceModel"`
	DeviceSDK       string `json:"DeviceSDK"`
	SessionActivity int64  `json:"SessionActivity"`
	SessionID       int64  `json:"SessionID"`
	SessionRegister int64  `json:"SessionRegister"`
	TgVersion       string `json:"TgVersion"`
	TargetABI       string `json:"TargetABI"`
}

// userResponse is a stored user as admins and clients see it: its id and
// what the device last reported.
type userResponse struct {
	ID int64 `json:"ID"`
	userRequest
}

func toUserResponse(u model.User) userResponse {
	return userResponse{ID: u.ID, userRequest: userRequest{
		AppLocale: u.AppLocale, AppVersion: u.AppVersion, DeviceLocale: u.DeviceLocale,
		DeviceMac: u.DeviceMac, DeviceModel: u.DeviceModel, DeviceSDK: u.DeviceSDK,
		SessionActivity: u.SessionActivity, SessionID: u.SessionID, SessionRegister: u.SessionRegister,
		TgVersion: u.TgVersion, TargetABI: u.TargetABI,
	}}
}

// handleUserReport answers POST /api/v1/users.
func handleUserReport(users *service.Users, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		req, err := decode[userRequest](w, r)
		if err != nil {
			fail(w, r, log, err)
			return
		}
		u, err := users.Report(r.Context(), model.User{
			AppLocale: req.AppLocale, AppVersion: req.AppVersion, DeviceLocale: req.DeviceLocale,
			DeviceMac: req.DeviceMac, DeviceModel: req.DeviceModel, DeviceSDK: req.DeviceSDK,
			SessionActivity: req.SessionActivity, SessionID: req.SessionID, SessionRegister: req.SessionRegister,
			TgVersion: req.TgVersion, TargetABI: req.TargetABI,
		})
		if err != nil {
			fail(w, r, log, err)
			return
		}
		encode(w, http.StatusOK, toUserResponse(u))
	}
}

// handleUserList answers GET /api/v1/users[?limit=N&after=ID], streaming
// the array as rows arrive so that no list is held whole in memory.
func handleUserList(users *service.Users, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		page, err := pageOf(r)
		if err != nil {
			fail(w, r, log, err)
			return
		}
		started := false
		// Rows are gathered into 64 KiB writes: one write a row would cost
		// a trip through every wrapping writer and often a syscall.
		out := bufio.NewWriterSize(w, 64<<10)
		enc := json.NewEncoder(out)
		err = users.Each(r.Context(), page, func(u model.User) error {
			sep := byte(',')
			if !started {
				started, sep = true, '['
				w.Header().Set("Content-Type", "application/json; charset=utf-8")
				w.WriteHeader(http.StatusOK)
			}
			out.WriteByte(sep)
			return enc.Encode(toUserResponse(u))
		})
		if err == nil {
			err = out.Flush()
		}
		switch {
		case err != nil && !started:
			fail(w, r, log, err)
		case err != nil:
			// The status is sent; cut the response so it cannot pass for a
			// complete array.
			log.ErrorContext(r.Context(), "user list aborted", "request_id", requestIDOf(w), "err", err)
			panic(http.ErrAbortHandler)
		case !started:
			encode(w, http.StatusOK, []userResponse{})
		default:
			w.Write([]byte("]\n"))
		}
	}
}

// pageOf reads ?limit=N&after=ID; both are optional.
func pageOf(r *http.Request) (model.Page, error) {
	var p model.Page
	q := r.URL.Query()
	bad := model.Errorf(model.Invalid, "after must be a non-negative id and limit an integer from 1 to %d.", model.MaxPageLimit)
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return p, bad
		}
		p.After = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return p, bad
		}
		p.Limit = n
	}
	return p, p.Validate()
}
