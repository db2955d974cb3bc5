/**
 * OpenAPI 3.1 description of the operator API, served at GET /openapi.json.
 * Owns: the public HTTP contract; http-api.ts implements it and test/e2e/api.test.ts checks
 * that every documented route answers as documented. Must not: drift from http-api.ts.
 */
import { CORE_VERSION } from '../plugin-api.js';

const error = {
  type: 'object',
  required: ['error', 'message'],
  properties: {
    error: {
      type: 'string',
      description: 'Stable machine-readable code, e.g. invalid_payload, not_connected, timeout',
    },
    message: { type: 'string' },
    field: { type: 'string', description: 'The request field at fault, when there is one' },
    callError: { type: 'object', description: "The charger's CALLERROR (code, description, details) for call_error" },
    node: {
      type: 'string',
      description: 'For not_connected and timeout of a command routed to another router node: that node',
    },
  },
};
const errRef = (d: string) => ({
  description: d,
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
});
const chargerId = {
  name: 'chargerId',
  in: 'path',
  required: true,
  schema: { type: 'string', maxLength: 64 },
  description: 'Charge point identity (URL-encoded)',
};

export const OPENAPI = {
  openapi: '3.1.0',
  info: {
    title: 'OCPP router operator API',
    version: CORE_VERSION,
    description:
      'Station data and remote commands. Every route except /health, /ready and /openapi.json needs an API key.',
  },
  components: {
    securitySchemes: {
      bearer: { type: 'http', scheme: 'bearer', description: 'API key created with `ocpp-router api-key create`' },
      apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
    },
    schemas: {
      Error: error,
      ConnectorStatus: {
        type: 'object',
        required: ['status', 'timestamp'],
        properties: {
          status: { type: 'string' },
          errorCode: { type: 'string' },
          info: { type: 'string' },
          vendorId: { type: 'string' },
          vendorErrorCode: { type: 'string' },
          timestamp: { type: 'string', format: 'date-time' },
        },
      },
      Charger: {
        type: 'object',
        required: ['id', 'connected', 'connectors'],
        properties: {
          id: { type: 'string' },
          vendor: { type: 'string' },
          model: { type: 'string' },
          serialNumber: { type: 'string' },
          firmwareVersion: { type: 'string' },
          ocppVersion: { type: 'string', enum: ['1.6', '2.0.1', '2.1'] },
          registeredAt: { type: 'string', format: 'date-time' },
          lastBootAt: { type: 'string', format: 'date-time' },
          lastSeenAt: { type: 'string', format: 'date-time' },
          bootStatus: { type: 'string' },
          connected: { type: 'boolean' },
          connectedHere: { type: 'boolean', description: 'Connected to the node that answered' },
          nodeId: { type: 'string', description: 'Router node holding the connection' },
          hasPassword: { type: 'boolean' },
          connectors: {
            type: 'object',
            additionalProperties: { $ref: '#/components/schemas/ConnectorStatus' },
            description: 'Keyed by "<connectorId>" (1.6) or "<evseId>/<connectorId>" (2.x)',
          },
        },
      },
    },
  },
  security: [{ bearer: [] }, { apiKey: [] }],
  paths: {
    '/health': { get: { summary: 'Liveness', security: [], responses: { 200: { description: 'Process is up' } } } },
    '/ready': {
      get: {
        summary: 'Readiness: listening, workers up, state store reachable',
        security: [],
        responses: { 200: { description: 'Ready' }, 503: { description: 'Not ready; `checks` says why' } },
      },
    },
    '/openapi.json': {
      get: { summary: 'This document', security: [], responses: { 200: { description: 'OpenAPI document' } } },
    },
    '/metrics': {
      get: {
        summary: 'Prometheus metrics',
        responses: { 200: { description: 'Prometheus text format' }, 401: errRef('No or bad API key') },
      },
    },
    '/api/v1/chargers': {
      get: {
        summary: 'List registered chargers with status',
        parameters: [
          { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
          {
            name: 'after',
            in: 'query',
            schema: { type: 'string' },
            description: 'Cursor: the `next` value of the previous page',
          },
        ],
        responses: {
          200: {
            description: 'A page of chargers',
            content: {
              'application/json': {
                schema: {
                  type: 'object',
                  properties: {
                    items: { type: 'array', items: { $ref: '#/components/schemas/Charger' } },
                    next: { type: ['string', 'null'] },
                    total: { type: 'integer' },
                  },
                },
              },
            },
          },
          400: errRef('Bad query parameter'),
          401: errRef('No or bad API key'),
        },
      },
    },
    '/api/v1/chargers/{chargerId}': {
      parameters: [chargerId],
      get: {
        summary: 'One charger',
        responses: {
          200: {
            description: 'The charger',
            content: { 'application/json': { schema: { $ref: '#/components/schemas/Charger' } } },
          },
          404: errRef('Not registered'),
          401: errRef('No or bad API key'),
        },
      },
      put: {
        summary: 'Register or update a charger (password stored hashed)',
        requestBody: {
          content: {
            'application/json': {
              schema: {
                type: 'object',
                additionalProperties: false,
                properties: {
                  password: { type: 'string', minLength: 16, maxLength: 40 },
                  label: { type: 'string' },
                  vendor: { type: 'string' },
                  model: { type: 'string' },
                  serialNumber: { type: 'string' },
                  firmwareVersion: { type: 'string' },
                },
              },
            },
          },
        },
        responses: {
          201: { description: 'Registered' },
          200: { description: 'Updated' },
          400: errRef('Invalid field'),
          401: errRef('No or bad API key'),
        },
      },
      delete: {
        summary: 'Remove a charger (disconnects it)',
        responses: { 204: { description: 'Removed' }, 404: errRef('Not registered'), 401: errRef('No or bad API key') },
      },
    },
    '/api/v1/chargers/{chargerId}/calls/{action}': {
      parameters: [
        chargerId,
        {
          name: 'action',
          in: 'path',
          required: true,
          schema: { type: 'string' },
          description:
            "A CSMS-initiated OCPP action of the charger's version, e.g. Reset, RemoteStartTransaction, RequestStartTransaction, GetVariables",
        },
        { name: 'timeoutMs', in: 'query', schema: { type: 'integer', minimum: 100, maximum: 600000, default: 30000 } },
      ],
      post: {
        summary: "Send a CSMS-initiated CALL and return the charger's answer",
        description:
          "The body is the OCPP request payload; it is validated against the official schema of the charger's version before it is sent, and the answer is validated too.",
        requestBody: { required: true, content: { 'application/json': { schema: { type: 'object' } } } },
        responses: {
          200: {
            description: 'The charger answered with a CALLRESULT',
            content: {
              'application/json': {
                schema: {
                  type: 'object',
                  properties: {
                    chargerId: { type: 'string' },
                    action: { type: 'string' },
                    result: { type: 'object' },
                    durationMs: { type: 'integer' },
                  },
                },
              },
            },
          },
          400: errRef("Unknown action for the charger's version, or invalid payload (`field` names the path)"),
          401: errRef('No or bad API key'),
          404: errRef('Charger not connected'),
          409: errRef('Too many CALLs queued for this charger'),
          502: errRef('The charger answered with a CALLERROR or an invalid payload, or disconnected'),
          504: errRef('The charger did not answer in time'),
        },
      },
    },
  },
} as const;
