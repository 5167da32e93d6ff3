package handler

// The release JSON and its schedule steps, for the external tests.
type (
	ReleaseResponse = releaseResponse
	StepResponse    = stepResponse
)
