package main

import (
	"reflect"
	"testing"
	"time"
)

func TestSelectBenchmarks(t *testing.T) {
	tests := []struct {
		only    string
		want    []string
		wantErr bool
	}{
		{"", benchmarkNames(), false},
		{"scale,datapath", []string{"datapath", "scale"}, false},
		{" Scale , ", []string{"scale"}, false},
		{"reliability", reliabilityNames, false},
		{"deployments,reliability", append(append([]string(nil), reliabilityNames...), "deployments"), false},
		{"nope", nil, true},
		{",", nil, true},
	}
	for _, tt := range tests {
		got, err := selectBenchmarks(tt.only)
		if (err != nil) != tt.wantErr {
			t.Errorf("selectBenchmarks(%q) error = %v, want error %v", tt.only, err, tt.wantErr)
			continue
		}
		if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
			t.Errorf("selectBenchmarks(%q) = %v, want %v", tt.only, got, tt.want)
		}
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-smoke", "-only", "scale", "-out", "/x", "-soak", "1m"})
	if err != nil {
		t.Fatal(err)
	}
	if !o.smoke || o.out != "/x" || !reflect.DeepEqual(o.only, []string{"scale"}) || o.soak != time.Minute {
		t.Errorf("parseFlags = %+v", o)
	}
	for _, bad := range [][]string{{"extra"}, {"-soak", "-1s"}, {"-only", "x"}, {"-nope"}} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
}

// Every benchmark is bounded, and smoke stays small enough for CI.
func TestSizesAndBudgets(t *testing.T) {
	smoke := sizesFor(options{smoke: true})
	full := sizesFor(options{})
	if smoke.scaleServices > 100 || smoke.idleConns > 1000 || smoke.soak > 10*time.Second || smoke.podsSeq > 10 {
		t.Errorf("smoke sizes are not tiny: %+v", smoke)
	}
	if full.scaleServices != 10000 || full.idleConns != 10000 || full.soak != 10*time.Minute || full.podsSeq != 100 || full.convCycles < 50 {
		t.Errorf("full sizes are not the issue's: %+v", full)
	}
	var total time.Duration
	for _, b := range benchmarks {
		if b.budget == nil || b.run == nil || b.name == "" || b.title == "" {
			t.Fatalf("benchmark %+v is incomplete", b.name)
		}
		d := b.budget(full)
		if d <= 0 || d > 15*time.Minute {
			t.Errorf("benchmark %s budget %s", b.name, d)
		}
		total += d
	}
	if total > 90*time.Minute {
		t.Errorf("budgets add up to %s", total)
	}
	if o := sizesFor(options{soak: 3 * time.Minute}); o.soak != 3*time.Minute {
		t.Errorf("-soak not applied: %s", o.soak)
	}
}

func TestExplainHasAFallback(t *testing.T) {
	if explain("no-such-figure") == "" {
		t.Error("explain returned nothing for an unknown figure")
	}
}
