package ssestream

import "testing"

func TestSequence(t *testing.T) {
	type ev struct{ id, status string }
	tests := []struct {
		name      string
		expectAll bool
		events    []ev
		gaps      int
		dups      int
		backwards int
	}{
		{"all in order", true, []ev{{"1-0", "Created"}, {"2-0", "PaymentConfirmed"}, {"3-0", "Packed"}, {"4-0", "Shipped"}, {"5-0", "OutForDelivery"}, {"6-0", "Delivered"}}, 0, 0, 0},
		{"one missing", true, []ev{{"1-0", "Created"}, {"3-0", "Packed"}}, 1, 0, 0},
		{"first missing", true, []ev{{"2-0", "PaymentConfirmed"}}, 1, 0, 0},
		{"skips to delivered", true, []ev{{"1-0", "Created"}, {"6-0", "Delivered"}}, 4, 0, 0},
		{"same id twice", true, []ev{{"1-0", "Created"}, {"1-0", "Created"}, {"2-0", "PaymentConfirmed"}}, 0, 1, 0},
		{"new id, old status", true, []ev{{"1-0", "Created"}, {"2-0", "PaymentConfirmed"}, {"3-0", "Created"}}, 0, 0, 1},
		{"cancelled ends anywhere", true, []ev{{"1-0", "Created"}, {"2-0", "Cancelled"}}, 0, 0, 0},
		{"gaps not checked without expectAll", false, []ev{{"1-0", "Created"}, {"4-0", "Shipped"}}, 0, 0, 0},
		{"duplicates checked without expectAll", false, []ev{{"4-0", "Shipped"}, {"4-0", "Shipped"}}, 0, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Sequence{ExpectAll: tt.expectAll}
			var gaps, dups, back int
			for _, e := range tt.events {
				v := s.Observe(e.id, e.status)
				gaps += v.Gaps
				if v.Duplicate {
					dups++
				}
				if v.Backwards {
					back++
				}
			}
			if gaps != tt.gaps || dups != tt.dups || back != tt.backwards {
				t.Errorf("gaps %d dups %d backwards %d, want %d %d %d", gaps, dups, back, tt.gaps, tt.dups, tt.backwards)
			}
		})
	}
}

func TestParseUpdate(t *testing.T) {
	u, err := ParseUpdate(`{"orderId":"7c9e6679-7425-40de-944b-e07fc1f90ae7","status":"Shipped","timestamp":"2026-11-24T14:00:00.123456Z","extra":1}`)
	if err != nil || u.Status != "Shipped" || u.Timestamp.Nanosecond() != 123456000 {
		t.Fatalf("got %+v, %v", u, err)
	}
	for _, bad := range []string{``, `{}`, `{"status":"Lost","timestamp":"2026-11-24T14:00:00Z"}`, `{"status":"Created"}`} {
		if _, err := ParseUpdate(bad); err == nil {
			t.Errorf("ParseUpdate(%q) accepted it", bad)
		}
	}
}
