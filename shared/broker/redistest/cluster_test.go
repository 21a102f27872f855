package redistest

import (
	"strings"
	"testing"
)

func TestStartCluster(t *testing.T) {
	c := StartCluster(t, Password("s3cret"))
	masters, err := c.Masters()
	if err != nil || len(masters) != 3 {
		t.Fatalf("masters %v, %v", masters, err)
	}
	for _, m := range masters {
		if r := c.ReplicaOf(m); r == nil || r == m {
			t.Fatalf("master %s has replica %v", m.Addr(), r)
		}
	}
	if u := c.URL(); !strings.HasPrefix(u, "redis://:s3cret@") || strings.Count(u, "addr=") != 5 {
		t.Fatalf("URL %s", u)
	}
}
