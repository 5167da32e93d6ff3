// Package model holds Wemesse's domain types and rules: releases, users,
// versions and the error codes every layer speaks. It knows nothing of
// databases or HTTP.
package model

import (
	"errors"
	"fmt"
)

// Code classifies an error so the outer layers can react to it without
// knowing where it came from.
type Code string

// The error codes. The handler maps each to one HTTP status.
const (
	Invalid       Code = "invalid"
	NotFound      Code = "not_found"
	Conflict      Code = "conflict"
	Unauthorized  Code = "unauthorized"
	Forbidden     Code = "forbidden"
	NotAllowed    Code = "not_allowed" // the method, on a resource that exists
	TooLarge      Code = "too_large"
	Unsupported   Code = "unsupported"
	Unprocessable Code = "unprocessable" // well-formed, but breaks a rule about its content
	TooMany       Code = "too_many"      // too many requests; retry later
	Unavailable   Code = "unavailable"
	Internal      Code = "internal"
)

// Error is an error with a code and a message a person can act on.
type Error struct {
	Code    Code
	Message string
}

// Error implements error.
func (e *Error) Error() string { return e.Message }

// Errorf builds an *Error with the given code.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, or Internal.
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}

// ErrorMessage returns the message of the first *Error in err's chain, or a
// generic sentence that leaks nothing.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "Internal error."
}
