package agnhost

import (
	"context"
	"fmt"
	"os"
	"time"
)

// runPause is upstream's `agnhost pause`, the image's default command: print
// "Paused", wait for a signal, optionally linger --delay-shutdown seconds,
// then exit 1 for SIGINT and 2 for SIGTERM.
func runPause(ctx context.Context, args []string, rt *runtime) error {
	fs := newFlagSet("pause", rt)
	delay := fs.Int("delay-shutdown", 0, "Number of seconds to delay shutdown when receiving SIGTERM/SIGINT.")
	if err := parseFlags(fs, args); err != nil {
		if err == errHelp {
			return nil
		}
		return err
	}
	fmt.Fprintln(rt.stdout, "Paused")
	<-ctx.Done()

	code := 2 // SIGTERM, what the agent sends to stop a container
	if isInterrupt(context.Cause(ctx)) {
		code = 1
	}
	if *delay > 0 {
		fmt.Fprintf(rt.stdout, "Sleeping %d seconds before exit ...", *delay)
		time.Sleep(time.Duration(*delay) * time.Second)
	}
	fmt.Fprintf(rt.stdout, "exiting %d\n", code)
	return &ExitError{Code: code}
}

// isInterrupt reports whether cause is signal.NotifyContext's cause for
// SIGINT. The stdlib type is unexported, so its text is all there is to match.
func isInterrupt(cause error) bool {
	return cause != nil && cause.Error() == os.Interrupt.String()+" signal received"
}
