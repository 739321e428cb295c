// Package archtest holds no code: its test keeps the import rules of
// docs/ARCHITECTURE.md, so the layering cannot erode one import at a time.
package archtest
