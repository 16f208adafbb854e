// Package report holds one benchmark run's results (the machine, and per
// benchmark a table of figures with their peer, ratio, target and
// verdict), writes them as Markdown and JSON, and draws the PNG charts.
package report
