package wire

// Internals the external tests (package wire_test) check.
var LargestRuns = largestRuns

const RegisterBitmapFlag = registerBitmap
