// Package samtemplate holds the tests of template.yaml: transform.py runs it
// through the real SAM transform (the samtranslator that ships with cfn-lint)
// and resolves it for one set of parameter values, as CloudFormation would;
// template_test.go asserts on the CloudFormation that comes out. Environment
// and CheckDefaults let each function's tests hold the defaults template.yaml
// gives it to the settings table (shared/config).
package samtemplate
