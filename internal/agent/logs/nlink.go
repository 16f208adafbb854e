package logs

import (
	"os"
	"syscall"
)

// nlink is the file's link count; 0 once rotation has deleted it.
func nlink(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}
