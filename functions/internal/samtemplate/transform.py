"""Run template.yaml through the real SAM transform (samtranslator, as
`sam deploy` has CloudFormation do) and resolve what CloudFormation would
resolve for one set of parameter values: conditions, Fn::If, Refs to
parameters, AWS::NoValue. Reads a JSON list of requests on stdin (one Python
start for all: importing samtranslator takes seconds) and prints a JSON list
of the resulting templates.

    echo '[{"template": "template.yaml", "params": {"Network": "vpc"}}]' | python3 transform.py

Used by template_test.go; needs the Python that has cfn-lint (which ships
samtranslator)."""

import json
import os
import sys

from samtranslator.parser import parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

PSEUDO = {
    "AWS::Region": "eu-west-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "orderstream",
}

NO_VALUE = object()


def main():
    json.dump([transform(r["template"], r["params"]) for r in json.load(sys.stdin)], sys.stdout, sort_keys=True)


def transform(path, overrides):
    with open(path) as f:
        template = yaml_parse(f.read())
    params = {k: p.get("Default") for k, p in template.get("Parameters", {}).items()}
    params.update(overrides)
    for k, v in params.items():
        if v is None:
            sys.exit("parameter %s has no default and no value" % k)
        if template["Parameters"][k]["Type"] == "CommaDelimitedList":
            params[k] = [s for s in v.split(",")] if isinstance(v, str) else v
    # What `sam deploy` does before CloudFormation sees the template: the
    # built code is uploaded and CodeUri names it.
    template["Globals"]["Function"]["CodeUri"] = "s3://orderstream-artifacts/code.zip"
    os.environ["AWS_DEFAULT_REGION"] = PSEUDO["AWS::Region"]
    # Managed policy names are not used by the template; an empty map makes
    # any that sneak in fail the transform.
    out = Translator(managed_policy_map={}, sam_parser=parser.Parser()).translate(
        sam_template=template, parameter_values=dict(params), passthrough_metadata=True
    )
    out = json.loads(json.dumps(out))  # plain dicts
    values = dict(PSEUDO, **params)
    conds = {}

    def cond(name):
        if name not in conds:
            conds[name] = bool(resolve(out["Conditions"][name]))
        return conds[name]

    def resolve(node):
        if isinstance(node, list):
            return [v for v in (resolve(x) for x in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (k, v), = node.items()
            if k == "Ref":
                if v == "AWS::NoValue":
                    return NO_VALUE
                return values.get(v, node)
            if k == "Condition" and isinstance(v, str):
                return cond(v)
            if k == "Fn::If":
                return resolve(v[1] if cond(v[0]) else v[2])
            if k == "Fn::Equals":
                a, b = resolve(v[0]), resolve(v[1])
                return str(a) == str(b)
            if k == "Fn::Not":
                return not resolve(v[0])
            if k == "Fn::And":
                return all(resolve(x) for x in v)
            if k == "Fn::Or":
                return any(resolve(x) for x in v)
            if k == "Fn::Join":
                parts = resolve(v[1])
                if isinstance(parts, list) and all(isinstance(p, str) for p in parts):
                    return v[0].join(parts)
                return {k: [v[0], parts]}
            if k == "Fn::Split":
                s = resolve(v[1])
                return s.split(v[0]) if isinstance(s, str) else {k: [v[0], s]}
            if k == "Fn::Select":
                lst = resolve(v[1])
                return lst[int(v[0])] if isinstance(lst, list) else {k: [v[0], lst]}
            if k == "Fn::Sub" and isinstance(v, str):
                s = v
                for name, val in values.items():
                    if isinstance(val, (str, int)):
                        s = s.replace("${%s}" % name, str(val))
                return s if "${" not in s else {k: s}
        res = {}
        for k, v in node.items():
            r = resolve(v)
            if r is not NO_VALUE:
                res[k] = r
        return res

    resources = {}
    for name, res in out["Resources"].items():
        if "Condition" in res and not cond(res["Condition"]):
            continue
        resources[name] = resolve({k: v for k, v in res.items() if k != "Condition"})
    return {
        "Parameters": template.get("Parameters", {}),
        "Resources": resources,
        "Outputs": {k: resolve(v) for k, v in out.get("Outputs", {}).items() if "Condition" not in v or cond(v["Condition"])},
    }


main()
