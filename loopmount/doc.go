// Package loopmount attaches image files to Linux loop devices and mounts
// them read-only.
//
// Attach binds a file to a free loop device with LOOP_CONFIGURE (read-only,
// autoclear), falling back to LOOP_SET_FD + LOOP_SET_STATUS64 on kernels
// without it, and retrying when another process grabs the free device first.
// MountImage attaches and mounts in one step (ro,nodev,nosuid, optionally
// noexec) and then drops its own reference to the device, so the mount is
// the device's only user: when the mount goes away the kernel's autoclear
// detaches the device. Nothing here has to remember to detach, so a crash
// between steps cannot leak a device (with LOOP_CONFIGURE; the fallback has
// a short window between LOOP_SET_FD and LOOP_SET_STATUS64).
//
// Unmount unmounts a directory only when nothing uses it (ErrBusy
// otherwise), never lazily: a lazily detached mount strands its users, whose
// next path lookup into it fails. Users reads /proc, as `fuser -m` does, to
// name the processes that hold a mount (working directory, root, executable,
// open files, memory maps), so a caller can say who keeps it and try again
// later.
//
// FindMounts and Mounts read /proc/self/mountinfo and
// /sys/block/loopN/loop/backing_file to find existing mounts of an image.
// The package knows nothing about releases.
package loopmount
