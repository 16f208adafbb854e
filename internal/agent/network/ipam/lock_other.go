//go:build !unix

package ipam

import "os"

// lockDir only opens the lock file where flock is not available; a second
// process sharing the directory is then not detected.
func lockDir(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
}

func unlockDir(f *os.File) error {
	if f == nil {
		return nil
	}
	return f.Close()
}
