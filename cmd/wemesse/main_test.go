package main

import (
	"os"
	"testing"

	"github.com/wemesse/server/internal/dbtest"
	"github.com/wemesse/server/internal/s3test"
)

func TestMain(m *testing.M) { os.Exit(s3test.Main(m, dbtest.Main)) }
