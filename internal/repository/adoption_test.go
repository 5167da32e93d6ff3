package repository

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wemesse/server/internal/dbtest"
)

// TestAdoption_usesIndex checks PostgreSQL answers the stats aggregate from
// idx_users_adoption on 100,000 users.
func TestAdoption_usesIndex(t *testing.T) {
	ctx := context.Background()
	db, err := OpenMigrated(ctx, dbtest.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	defer Close(db)
	// Rows as wide as real ones, spread over 120 versions as a client base
	// is: the planner weighs heap pages against the index.
	if err := db.Exec(`INSERT INTO users (app_locale, app_version, device_locale, device_mac, device_model, device_sdk,
			session_activity, session_id, session_register, tg_version, target_abi)
		SELECT 'en', (2240 + g % 40) || '_0' || (g % 3), 'en-us',
			'02:30:54:' || lpad(to_hex(g), 8, '0'), 'OnePlus A6000 build ' || g, 'SDK 30',
			? - g * 60, g, 1636034599, '8.1.2', (ARRAY['','arm','arm64','x86'])[1 + g % 3]
		FROM generate_series(1, 100000) g`, time.Now().Unix()).Error; err != nil {
		t.Fatal(err)
	}
	if err := db.Exec("VACUUM ANALYZE users").Error; err != nil {
		t.Fatal(err)
	}
	var plan []string
	if err := db.Raw("EXPLAIN "+adoptionQuery, time.Now().Unix(), "2265_01").Scan(&plan).Error; err != nil {
		t.Fatal(err)
	}
	text := strings.Join(plan, "\n")
	if !strings.Contains(text, "idx_users_adoption") || strings.Contains(text, "Seq Scan") {
		t.Errorf("the adoption query does not use idx_users_adoption:\n%s", text)
	}
	t.Logf("plan:\n%s", text)
	got, err := NewUsers(db).Adoption(ctx, versions(), 0)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, g := range got {
		total += g.Devices
	}
	if total != 100000 {
		t.Errorf("adoption groups hold %d devices, want 100000", total)
	}
}

func versions() []string {
	var out []string
	for v := 2240; v < 2280; v++ {
		for m := range 3 {
			out = append(out, fmt.Sprintf("%d_0%d", v, m))
		}
	}
	return out
}
