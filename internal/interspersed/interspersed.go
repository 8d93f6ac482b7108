// Package interspersed parses a command line whose flags may come before,
// between or after its other arguments, as GNU tools take them: the
// standard flag package stops at the first argument that is not a flag.
package interspersed

import "flag"

// Parse parses fs's flags wherever they stand among args and returns the
// other arguments in order. "--" ends the flags: every argument after it
// is returned as it is. Errors are fs.Parse's, flag.ErrHelp included.
func Parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
