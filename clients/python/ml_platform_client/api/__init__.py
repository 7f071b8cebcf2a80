# flake8: noqa

# import apis into api package
from ml_platform_client.api.administration_api import AdministrationApi
from ml_platform_client.api.code_packages_api import CodePackagesApi
from ml_platform_client.api.data_api import DataApi
from ml_platform_client.api.deployments_api import DeploymentsApi
from ml_platform_client.api.features_api import FeaturesApi
from ml_platform_client.api.health_api import HealthApi
from ml_platform_client.api.identity_api import IdentityApi
from ml_platform_client.api.models_api import ModelsApi
from ml_platform_client.api.quotas_api import QuotasApi
from ml_platform_client.api.training_api import TrainingApi

