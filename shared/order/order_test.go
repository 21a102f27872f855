package order

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestCheckTransition(t *testing.T) {
	// allowed[from] lists every status that may follow from; the rest must be refused.
	allowed := map[Status][]Status{
		0:                {Created, PaymentConfirmed, Packed, Shipped, OutForDelivery, Delivered, Cancelled},
		Created:          {PaymentConfirmed, Packed, Shipped, OutForDelivery, Delivered, Cancelled},
		PaymentConfirmed: {Packed, Shipped, OutForDelivery, Delivered, Cancelled},
		Packed:           {Shipped, OutForDelivery, Delivered, Cancelled},
		Shipped:          {OutForDelivery, Delivered},
		OutForDelivery:   {Delivered},
		Delivered:        nil,
		Cancelled:        nil,
	}
	for from, tos := range allowed {
		ok := map[Status]bool{}
		for _, to := range tos {
			ok[to] = true
		}
		for _, to := range Statuses() {
			err := CheckTransition(from, to)
			if ok[to] {
				if err != nil {
					t.Errorf("%v -> %v: got %v, want allowed", from, to, err)
				}
				continue
			}
			var te *TransitionError
			if !errors.As(err, &te) {
				t.Errorf("%v -> %v: got %v, want *TransitionError", from, to, err)
				continue
			}
			if te.Current != from || te.Requested != to {
				t.Errorf("%v -> %v: error names %v -> %v", from, to, te.Current, te.Requested)
			}
			if !strings.Contains(te.Error(), from.String()) {
				t.Errorf("%v -> %v: message %q does not name the current status", from, to, te.Error())
			}
		}
	}
	if err := CheckTransition(Created, 0); !errors.Is(err, ErrUnknownStatus) {
		t.Errorf("transition to zero status: got %v, want ErrUnknownStatus", err)
	}
}

func TestParseStatus(t *testing.T) {
	for _, s := range Statuses() {
		got, err := ParseStatus(s.String())
		if err != nil || got != s {
			t.Errorf("ParseStatus(%q) = %v, %v", s.String(), got, err)
		}
	}
	for _, bad := range []string{"", "shipped", "SHIPPED", " Shipped", "Shipped ", "4", "Status(4)", "Unknown"} {
		if _, err := ParseStatus(bad); !errors.Is(err, ErrUnknownStatus) {
			t.Errorf("ParseStatus(%q): got %v, want ErrUnknownStatus", bad, err)
		}
	}
}

func TestStatusNext(t *testing.T) {
	tests := []struct {
		from   Status
		want   Status
		wantOK bool
	}{
		{0, Created, true},
		{Created, PaymentConfirmed, true},
		{PaymentConfirmed, Packed, true},
		{Packed, Shipped, true},
		{Shipped, OutForDelivery, true},
		{OutForDelivery, Delivered, true},
		{Delivered, 0, false},
		{Cancelled, 0, false},
		{Status(99), 0, false},
	}
	for _, tt := range tests {
		got, ok := tt.from.Next()
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("%v.Next() = %v, %v; want %v, %v", tt.from, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestUpdateJSON(t *testing.T) {
	id := uuid.MustParse("7C9E6679-7425-40DE-944B-E07FC1F90AE7")
	u := Update{OrderID: id, Status: Shipped, Timestamp: time.Date(2026, 11, 24, 14, 0, 0, 123456000, time.UTC)}
	b, err := json.Marshal(u)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"orderId":"7c9e6679-7425-40de-944b-e07fc1f90ae7","status":"Shipped","timestamp":"2026-11-24T14:00:00.123456Z"}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	var back Update
	if err := json.Unmarshal(b, &back); err != nil || back != u {
		t.Errorf("round trip: %+v, %v", back, err)
	}
	// The seed defect: statuses as numbers. Neither direction may use them.
	if err := json.Unmarshal([]byte(`{"status":4}`), &back); err == nil {
		t.Error("a numeric status was accepted")
	}
	if _, err := json.Marshal(Update{Status: 0}); err == nil {
		t.Error("the zero status was marshalled")
	}
}

func TestParseID(t *testing.T) {
	const canonical = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
	for _, in := range []string{
		canonical,
		strings.ToUpper(canonical),
		"urn:uuid:" + canonical,
		"{" + canonical + "}",
		strings.ReplaceAll(canonical, "-", ""),
	} {
		id, err := ParseID(in)
		if err != nil || id.String() != canonical {
			t.Errorf("ParseID(%q) = %v, %v", in, id, err)
		}
	}
	for _, bad := range []string{"", "42", "not-a-uuid", canonical + "0", "7c9e6679-7425-40de-944b-e07fc1f90aeg"} {
		if _, err := ParseID(bad); err == nil {
			t.Errorf("ParseID(%q) accepted", bad)
		}
	}
}
