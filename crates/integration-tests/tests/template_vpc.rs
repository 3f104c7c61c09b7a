//! Private networking in template.yaml (VpcMode On): the functions in private subnets, AWS
//! reached through VPC endpoints only, each endpoint admitting the stack's resources and the
//! configured models only, HTTPS only between the functions and the endpoints, no public
//! Function URL unless asked; and cfn-lint clean in every mode.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use quarry_testkit::template::{
    document_statements, of_type, parse, resource, resources, statements, strings, template, text,
    yaml,
};
use serde_yaml_ng::Value;

/// The interface endpoints (11) and the gateway endpoints (2), by service.
const INTERFACE: [(&str, &str); 11] = [
    ("BedrockRuntimeEndpoint", "bedrock-runtime"),
    ("BedrockAgentRuntimeEndpoint", "bedrock-agent-runtime"),
    ("BedrockEndpoint", "bedrock"),
    ("SsmEndpoint", "ssm"),
    ("SqsEndpoint", "sqs"),
    ("SnsEndpoint", "sns"),
    ("KmsEndpoint", "kms"),
    ("LogsEndpoint", "logs"),
    ("FirehoseEndpoint", "kinesis-firehose"),
    ("StsEndpoint", "sts"),
    ("XrayEndpoint", "xray"),
];
const GATEWAY: [(&str, &str); 2] = [("DynamoDbEndpoint", "dynamodb"), ("S3Endpoint", "s3")];

/// Services whose actions here have no resource-level permission, so an endpoint policy
/// can only name `*`: sts:GetCallerIdentity, and X-Ray's PutTraceSegments,
/// PutTelemetryRecords, GetSamplingRules and GetSamplingTargets.
const NO_RESOURCE_LEVEL: [&str; 2] = ["StsEndpoint", "XrayEndpoint"];

/// The parameters that name models, profiles, guardrails and Knowledge Bases.
const CONFIGURED: [&str; 6] = [
    "FoundationModelIds",
    "InferenceProfileIds",
    "RerankModelIds",
    "GuardrailArn",
    "GroundingGuardrailArn",
    "KnowledgeBaseArns",
];

/// A condition of the template, evaluated with these parameter values (defaults otherwise).
/// Enough of CloudFormation's condition functions for the template's conditions.
fn condition(t: &Value, name: &str, params: &BTreeMap<&str, &str>) -> bool {
    fn value(t: &Value, v: &Value, params: &BTreeMap<&str, &str>) -> String {
        if let Some(s) = v.as_str() {
            return s.to_owned();
        }
        if let Some(p) = v.get("Ref").and_then(Value::as_str) {
            return params.get(p).map_or_else(
                || match &t["Parameters"][p]["Default"] {
                    Value::Number(n) => n.to_string(),
                    other => other.as_str().unwrap_or_default().to_owned(),
                },
                |v| (*v).to_owned(),
            );
        }
        if let Some(join) = v.get("Fn::Join") {
            // `!Join ["", !Ref List]`: a list parameter's text without its commas.
            let text = value(t, &join[1], params);
            return text
                .split(',')
                .collect::<Vec<_>>()
                .join(join[0].as_str().unwrap());
        }
        panic!("condition value {}", yaml(v))
    }
    fn eval(t: &Value, c: &Value, params: &BTreeMap<&str, &str>) -> bool {
        // `!Condition X` in a condition reads `{Fn::Condition: X}` in the long form.
        if let Some(name) = c.get("Fn::Condition").and_then(Value::as_str) {
            return eval(t, &t["Conditions"][name], params);
        }
        if let Some(args) = c.get("Fn::Equals") {
            return value(t, &args[0], params) == value(t, &args[1], params);
        }
        if let Some(args) = c.get("Fn::Not") {
            return !eval(t, &args[0], params);
        }
        if let Some(args) = c.get("Fn::Or").and_then(Value::as_sequence) {
            return args.iter().any(|a| eval(t, a, params));
        }
        if let Some(args) = c.get("Fn::And").and_then(Value::as_sequence) {
            return args.iter().all(|a| eval(t, a, params));
        }
        panic!("condition {}", yaml(c))
    }
    let c = &t["Conditions"][name];
    assert!(!c.is_null(), "no condition {name}");
    eval(t, c, params)
}

fn endpoints(t: &Value) -> Vec<(String, Value)> {
    of_type(t, "AWS::EC2::VPCEndpoint")
}

#[test]
fn vpc_mode_is_off_by_default_and_its_parameters_are_there() {
    let t = template();
    let p = &t["Parameters"];
    assert_eq!(p["VpcMode"]["Default"], "Off");
    assert_eq!(strings(&p["VpcMode"]["AllowedValues"]), ["Off", "On"]);
    assert_eq!(p["FunctionUrlInVpc"]["Default"], "false");
    assert_eq!(
        strings(&p["FunctionUrlInVpc"]["AllowedValues"]),
        ["false", "true"]
    );
    for list in ["PrivateSubnetIds", "PrivateRouteTableIds"] {
        assert_eq!(p[list]["Type"], "CommaDelimitedList", "{list}");
        assert_eq!(p[list]["Default"], "", "{list}");
    }
    for id in ["VpcId", "DynamoDbPrefixListId", "S3PrefixListId"] {
        assert_eq!(p[id]["Default"], "", "{id}");
    }
    let on = BTreeMap::from([("VpcMode", "On")]);
    assert!(condition(&t, "VpcOn", &on));
    assert!(!condition(&t, "VpcOn", &BTreeMap::new()));
    // VpcMode On without its network fails before anything is created.
    let rule = yaml(&t["Rules"]["PrivateNetworkingIsComplete"]);
    for p in [
        "VpcId",
        "PrivateSubnetIds",
        "PrivateRouteTableIds",
        "DynamoDbPrefixListId",
        "S3PrefixListId",
    ] {
        assert!(rule.contains(p), "{p}: {rule}");
    }
}

#[test]
fn every_endpoint_exists_in_vpc_mode_only_private_and_behind_the_endpoints_group() {
    let t = template();
    let all: BTreeMap<String, Value> = endpoints(&t).into_iter().collect();
    let expected: BTreeSet<&str> = INTERFACE.iter().chain(&GATEWAY).map(|(n, _)| *n).collect();
    assert_eq!(
        all.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        expected
    );
    for (name, service) in INTERFACE.iter().chain(&GATEWAY) {
        let e = &all[*name];
        assert_eq!(e["Condition"], "VpcOn", "{name}");
        let p = &e["Properties"];
        assert_eq!(
            p["ServiceName"]["Fn::Sub"],
            format!("com.amazonaws.${{AWS::Region}}.{service}"),
            "{name}"
        );
        assert_eq!(p["VpcId"]["Ref"], "VpcId", "{name}");
        assert!(p["PolicyDocument"]["Statement"].is_sequence(), "{name}");
    }
    for (name, _) in INTERFACE {
        let p = &all[name]["Properties"];
        assert_eq!(p["VpcEndpointType"], "Interface", "{name}");
        assert_eq!(p["PrivateDnsEnabled"], true, "{name}");
        assert_eq!(p["SubnetIds"]["Ref"], "PrivateSubnetIds", "{name}");
        assert_eq!(
            yaml(&p["SecurityGroupIds"]).trim(),
            "- Fn::GetAtt: EndpointsSecurityGroup.GroupId",
            "{name}"
        );
    }
    for (name, _) in GATEWAY {
        let p = &all[name]["Properties"];
        assert_eq!(p["VpcEndpointType"], "Gateway", "{name}");
        assert_eq!(p["RouteTableIds"]["Ref"], "PrivateRouteTableIds", "{name}");
    }
    // Everything of the private network exists in VpcMode On only.
    for ty in [
        "AWS::EC2::SecurityGroup",
        "AWS::EC2::SecurityGroupIngress",
        "AWS::EC2::SecurityGroupEgress",
    ] {
        for (name, r) in of_type(&t, ty) {
            assert_eq!(r["Condition"], "VpcOn", "{name}");
        }
    }
}

/// Every resource an endpoint admits is one of the stack's (a Ref, a GetAtt, a Sub of
/// one), one the parameters name (models, profiles, guardrails, Knowledge Bases), or of
/// this account under the stage's names; `*` only where the service has no resource-level
/// permission. And no endpoint admits an action no function's role has.
#[test]
fn endpoint_policies_admit_only_the_stacks_resources_and_the_configured_models() {
    let t = template();
    let names: BTreeSet<String> = resources(&t).into_iter().map(|(n, _)| n).collect();
    let names_a_stack_resource = |text: &str| {
        names.iter().any(|n| {
            text.contains(&format!("Ref: {n}\n"))
                || text.contains(&format!("GetAtt: {n}."))
                || text.contains(&format!("${{{n}"))
        })
    };
    // What the functions may do: their inline statements, and what SAM attaches to every
    // function's role (CloudWatch Logs, X-Ray). sts:GetCallerIdentity needs no permission.
    let mut granted: BTreeSet<String> = of_type(&t, "AWS::Serverless::Function")
        .iter()
        .flat_map(|(_, f)| statements(f))
        .filter(|st| st["Effect"] == "Allow")
        .flat_map(|st| strings(&st["Action"]))
        .collect();
    granted.extend(
        [
            "logs:CreateLogStream",
            "logs:PutLogEvents",
            "xray:PutTraceSegments",
            "xray:PutTelemetryRecords",
            "xray:GetSamplingRules",
            "xray:GetSamplingTargets",
            "sts:GetCallerIdentity",
        ]
        .map(String::from),
    );
    for (name, e) in endpoints(&t) {
        let all = document_statements(&e["Properties"]["PolicyDocument"]["Statement"]);
        let allows: Vec<&Value> = all.iter().filter(|st| st["Effect"] == "Allow").collect();
        assert!(
            !allows.is_empty() || name == "BedrockAgentRuntimeEndpoint",
            "{name}"
        );
        for st in &all {
            assert_eq!(st["Principal"], "*", "{name}");
        }
        for st in allows {
            for action in strings(&st["Action"]) {
                assert!(!action.contains('*'), "{name}: {action}");
                assert!(
                    granted.contains(&action),
                    "{name}: {action} is no function's"
                );
            }
            let items = match &st["Resource"] {
                Value::Sequence(items) => items.clone(),
                one => vec![one.clone()],
            };
            for item in items {
                let text = yaml(&item);
                if item == "*" {
                    assert!(NO_RESOURCE_LEVEL.contains(&name.as_str()), "{name}: *");
                    continue;
                }
                let configured = CONFIGURED
                    .iter()
                    .any(|p| text.contains(&format!("Ref: {p}\n")));
                let this_account = text.contains("${AWS::AccountId}")
                    && (text.contains("${Stage}")
                        || [
                            ":application-inference-profile/*",
                            ":provisioned-model/*",
                            ":model-invocation-job/*",
                        ]
                        .iter()
                        .any(|k| text.contains(k)));
                assert!(
                    names_a_stack_resource(&text) || configured || this_account,
                    "{name}: {text}"
                );
            }
        }
    }
    // Bedrock: the routed models and profiles and the guardrails, as the roles have them.
    let runtime = yaml(&resource(&t, "BedrockRuntimeEndpoint"));
    for p in [
        "FoundationModelIds",
        "InferenceProfileIds",
        "GuardrailArn",
        "GroundingGuardrailArn",
    ] {
        assert!(runtime.contains(p), "bedrock-runtime: {p}");
    }
    let agent = yaml(&resource(&t, "BedrockAgentRuntimeEndpoint"));
    assert!(agent.contains("KnowledgeBaseArns") && agent.contains("RerankModelIds"));
    let control = yaml(&resource(&t, "BedrockEndpoint"));
    assert!(control.contains("model-invocation-job/*") && control.contains("FoundationModelIds"));
    // The data: every table, queue and bucket of the stack through its endpoint.
    for (endpoint, ty) in [
        ("DynamoDbEndpoint", "AWS::DynamoDB::Table"),
        ("SqsEndpoint", "AWS::SQS::Queue"),
        ("S3Endpoint", "AWS::S3::Bucket"),
        ("SnsEndpoint", "AWS::SNS::Topic"),
    ] {
        let policy = yaml(&resource(&t, endpoint)["Properties"]["PolicyDocument"]);
        for (r, _) in of_type(&t, ty) {
            assert!(policy.contains(&r), "{endpoint}: {r}");
        }
    }
    for (endpoint, r) in [
        ("KmsEndpoint", "QuarryKey"),
        ("FirehoseEndpoint", "AuditStream"),
    ] {
        assert!(yaml(&resource(&t, endpoint)).contains(r), "{endpoint}: {r}");
    }
    assert!(yaml(&resource(&t, "SsmEndpoint")).contains("parameter/quarry/${Stage}/*"));
    assert!(yaml(&resource(&t, "LogsEndpoint")).contains("log-group:/quarry/${Stage}/*"));
}

#[test]
fn only_https_flows_between_the_functions_and_the_endpoints() {
    let t = template();
    let functions = resource(&t, "FunctionsSecurityGroup");
    let egress = functions["Properties"]["SecurityGroupEgress"]
        .as_sequence()
        .unwrap()
        .clone();
    assert_eq!(egress.len(), 3);
    let mut to = BTreeSet::new();
    for rule in &egress {
        assert_eq!(rule["IpProtocol"], "tcp");
        assert_eq!(rule["FromPort"], 443);
        assert_eq!(rule["ToPort"], 443);
        assert!(rule.get("CidrIp").is_none() && rule.get("CidrIpv6").is_none());
        to.insert(yaml(
            rule.get("DestinationSecurityGroupId")
                .or_else(|| rule.get("DestinationPrefixListId"))
                .unwrap(),
        ));
    }
    // The interface endpoints' group, and the gateway endpoints' prefix lists (a rule
    // cannot name a gateway endpoint).
    assert_eq!(
        to,
        [
            "Fn::GetAtt: EndpointsSecurityGroup.GroupId\n",
            "Ref: DynamoDbPrefixListId\n",
            "Ref: S3PrefixListId\n",
        ]
        .map(String::from)
        .into()
    );
    let endpoints = resource(&t, "EndpointsSecurityGroup");
    assert!(
        endpoints["Properties"]
            .get("SecurityGroupIngress")
            .is_none()
    );
    // The endpoints never connect: their only egress rule leads nowhere.
    let out = &endpoints["Properties"]["SecurityGroupEgress"];
    assert_eq!(out.as_sequence().unwrap().len(), 1);
    assert_eq!(out[0]["CidrIp"], "255.255.255.255/32");
    let ingress = of_type(&t, "AWS::EC2::SecurityGroupIngress");
    assert_eq!(ingress.len(), 1);
    let rule = &ingress[0].1["Properties"];
    assert_eq!(
        rule["GroupId"]["Fn::GetAtt"],
        "EndpointsSecurityGroup.GroupId"
    );
    assert_eq!(
        rule["SourceSecurityGroupId"]["Fn::GetAtt"],
        "FunctionsSecurityGroup.GroupId"
    );
    assert_eq!(rule["IpProtocol"], "tcp");
    assert_eq!(rule["FromPort"], 443);
    assert_eq!(rule["ToPort"], 443);
    assert!(of_type(&t, "AWS::EC2::SecurityGroupEgress").is_empty());
}

#[test]
fn every_function_runs_in_the_private_subnets_in_vpc_mode_only() {
    let t = template();
    assert!(t["Globals"]["Function"].get("VpcConfig").is_none());
    for (name, f) in of_type(&t, "AWS::Serverless::Function") {
        let vpc = &f["Properties"]["VpcConfig"]["Fn::If"];
        assert_eq!(vpc[0], "VpcOn", "{name}");
        assert_eq!(
            strings(&vpc[1]["SecurityGroupIds"].as_sequence().unwrap()[0]["Ref"]),
            ["FunctionsSecurityGroup"],
            "{name}"
        );
        assert!(
            yaml(&vpc[1]["SubnetIds"]).contains("Ref: PrivateSubnetIds"),
            "{name}"
        );
        assert_eq!(vpc[2]["Ref"], "AWS::NoValue", "{name}");
        // SAM attaches AWSLambdaVPCAccessExecutionRole to every role that has a VpcConfig
        // in the template; outside VpcMode On its network interfaces are refused.
        let guard = f["Properties"]["Policies"]
            .as_sequence()
            .unwrap()
            .iter()
            .flat_map(|p| p["Statement"].as_sequence().cloned().unwrap_or_default())
            .find(|st| st["Fn::If"][2]["Sid"] == "NoNetworkInterfacesOutsideVpcMode")
            .unwrap_or_else(|| panic!("{name}: no NoNetworkInterfacesOutsideVpcMode"));
        let guard = &guard["Fn::If"];
        assert_eq!(guard[0], "VpcOn", "{name}");
        assert_eq!(guard[1]["Ref"], "AWS::NoValue", "{name}");
        assert_eq!(guard[2]["Effect"], "Deny", "{name}");
        assert!(
            strings(&guard[2]["Action"]).contains(&"ec2:CreateNetworkInterface".to_owned()),
            "{name}"
        );
    }
}

#[test]
fn the_function_url_is_off_in_vpc_mode_unless_asked_for() {
    let t = template();
    let stream = resource(&t, "ChatStreamFunction");
    assert!(stream["Properties"].get("FunctionUrlConfig").is_none());
    for (mode, in_vpc, expected) in [
        ("Off", "false", true),
        ("Off", "true", true),
        ("On", "false", false),
        ("On", "true", true),
    ] {
        let params = BTreeMap::from([("VpcMode", mode), ("FunctionUrlInVpc", in_vpc)]);
        assert_eq!(
            condition(&t, "HasFunctionUrl", &params),
            expected,
            "{params:?}"
        );
        for auth in ["api_key", "jwt", "iam"] {
            let mut params = params.clone();
            params.insert("AuthMode", auth);
            assert_eq!(
                condition(&t, "PublicFunctionUrl", &params),
                expected && auth == "api_key",
                "{params:?}"
            );
        }
    }
    // Everything tied to the URL has its condition: the URL, its grants, the output.
    let mut tied = Vec::new();
    for (name, r) in resources(&t) {
        let props = yaml(&r["Properties"]);
        if name == "ChatStreamFunctionUrl" {
            assert_eq!(r["Condition"], "HasFunctionUrl");
            tied.push(name);
        } else if r["Type"] == "AWS::Lambda::Permission" && props.contains("ChatStreamFunction") {
            assert_eq!(r["Condition"], "PublicFunctionUrl", "{name}");
            tied.push(name);
        } else {
            assert!(!props.contains("ChatStreamFunctionUrl"), "{name}");
        }
    }
    assert_eq!(tied.len(), 3, "{tied:?}");
    for (name, output) in t["Outputs"].as_mapping().unwrap() {
        if yaml(output).contains("ChatStreamFunctionUrl") {
            assert_eq!(output["Condition"], "HasFunctionUrl", "{name:?}");
        }
    }
    assert_eq!(t["Outputs"]["StreamUrl"]["Condition"], "HasFunctionUrl");
    // AuthType NONE: anyone may invoke, through the URL only.
    let invoke = resource(&t, "ChatStreamFunctionURLInvokeAllowPublicAccess");
    assert_eq!(invoke["Properties"]["InvokedViaFunctionUrl"], true);
    let url = resource(&t, "ChatStreamFunctionUrlPublicPermissions");
    assert_eq!(url["Properties"]["FunctionUrlAuthType"], "NONE");
}

/// template.yaml with parameter defaults changed (each `Name: Default` pair must exist).
fn variant(defaults: &[(&str, &str, &str)]) -> String {
    let mut text = text();
    for (param, from, to) in defaults {
        let block = format!("  {param}:\n    Type: String\n    Default: \"{from}\"\n");
        assert!(text.contains(&block), "{param}");
        text = text.replace(
            &block,
            &format!("  {param}:\n    Type: String\n    Default: \"{to}\"\n"),
        );
    }
    // The variant must still be the template it claims to be.
    for (param, _, to) in defaults {
        assert_eq!(parse(&text)["Parameters"][*param]["Default"], *to);
    }
    text
}

fn cfn_lint(path: &Path) -> (bool, String) {
    let out = Command::new(quarry_testkit::python())
        .args([
            "-c",
            "import sys; from cfnlint.runner import main; sys.exit(main())",
        ])
        .arg(path)
        .output()
        .expect("python with cfn-lint (make venv)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), report)
}

/// `make lint` fails on any cfn-lint finding (errors and warnings alike): so does this,
/// for VpcMode Off (the template as it is) and On, with and without the Function URL.
#[test]
fn cfn_lint_is_clean_in_every_networking_mode() {
    let dir = std::env::temp_dir().join(format!("quarry-template-vpc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let variants = [
        ("off.yaml", variant(&[])),
        ("on.yaml", variant(&[("VpcMode", "Off", "On")])),
        (
            "on-url.yaml",
            variant(&[
                ("VpcMode", "Off", "On"),
                ("FunctionUrlInVpc", "false", "true"),
            ]),
        ),
    ];
    let runs: Vec<_> = variants
        .into_iter()
        .map(|(name, text)| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            std::thread::spawn(move || (name, cfn_lint(&path)))
        })
        .collect();
    let mut failures = Vec::new();
    for run in runs {
        let (name, (ok, report)) = run.join().unwrap();
        if !ok {
            failures.push(format!("{name}:\n{report}"));
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
