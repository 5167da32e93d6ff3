package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
)

// allScenario runs every other scenario into one report; `make bench` runs
// it. The flags of all of them apply. A scenario that stops with an error
// is noted and the next one still runs; the run then fails.
type allScenario struct {
	subs []scenario
}

func (*allScenario) Name() string { return "all" }

func (a *allScenario) Summary() string {
	return "every scenario above, in that order except auth last (its floods saturate every core), into one table"
}

func (a *allScenario) members() []scenario {
	if a.subs == nil {
		a.subs = []scenario{&updateScenario{}, &deviceScenario{}, &usersScenario{}, &uploadScenario{}, &consoleScenario{}, &authScenario{}}
	}
	return a.subs
}

func (a *allScenario) SetFlags(fs *flag.FlagSet) {
	for _, sc := range a.members() {
		sc.SetFlags(fs)
	}
}

func (a *allScenario) Run(ctx context.Context, b *bench, rep *report) error {
	var names []string
	for _, sc := range a.members() {
		names = append(names, sc.Name())
	}
	rep.setupf("scenarios: %s", strings.Join(names, ", "))
	var errs []error
	for _, sc := range a.members() {
		b.logf("=== %s", sc.Name())
		if err := sc.Run(ctx, b, rep); err != nil {
			err = fmt.Errorf("%s: %w", sc.Name(), err)
			rep.notef("scenario %v", err)
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
		}
	}
	return errors.Join(errs...)
}
