from django.conf import settings
from django.db.models.signals import post_save
from django.dispatch import receiver
from rest_framework.authtoken.models import Token


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def give_every_user_a_token(sender, instance, created, raw=False, **kwargs):
    if created and not raw:
        Token.objects.get_or_create(user=instance)
